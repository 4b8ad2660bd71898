package protocol

// SafetyWords is the word list of safety numbers (SafetyNumber.Words): 256
// English words of 4 to 6 letters, in alphabetical order, no two alike in
// their first three letters, so that a word can be read out, typed and
// checked by its start. Index = byte value. The list is part of the
// specification (docs/PROTOCOL.md, section 11.6): do not edit it.
var SafetyWords = [256]string{
	"acid", "acorn", "adobe", "agent", "album", "amber", "angle", "apple", "arena", "armor", "atlas",
	"autumn", "bacon", "bagel", "baker", "banjo", "basket", "beach", "bench", "bison", "bonus",
	"bottle", "bread", "bridge", "bubble", "bucket", "bundle", "butter", "cabin", "camel", "carpet",
	"castle", "cedar", "cement", "chalk", "circle", "citrus", "cobalt", "comet", "copper", "cotton",
	"crane", "crown", "cube", "dagger", "daisy", "delta", "denim", "diesel", "dipper", "disk",
	"domino", "door", "dragon", "duck", "eagle", "easel", "effort", "elbow", "empire", "envoy",
	"epoch", "escape", "exile", "fabric", "fargo", "ferry", "fiddle", "figure", "finger", "flag",
	"foam", "forest", "frame", "fruit", "fudge", "gadget", "garden", "gate", "ghost", "giant",
	"glove", "golf", "gospel", "guitar", "habit", "hammer", "hawk", "helmet", "hero", "hinge",
	"hippo", "hockey", "hook", "horse", "house", "husky", "icicle", "idea", "image", "impact",
	"index", "insect", "island", "jacket", "jaguar", "jelly", "jewel", "jigsaw", "jolly", "juggle",
	"juice", "jury", "kayak", "kettle", "kiwi", "knee", "koala", "ladder", "lagoon", "laptop", "lava",
	"lawn", "lens", "letter", "lime", "lion", "liquid", "locket", "logic", "lotus", "lunar", "magnet",
	"maize", "maple", "marble", "meadow", "metal", "milk", "mirror", "mobile", "modem", "monkey",
	"motor", "muffin", "napkin", "nature", "nebula", "nest", "nickel", "noble", "north", "novel",
	"number", "oasis", "oboe", "office", "olive", "onion", "opera", "orange", "orchid", "otter",
	"oven", "oyster", "palace", "panda", "parrot", "pasta", "pebble", "pepper", "piano", "pigeon",
	"pine", "pirate", "planet", "pocket", "poem", "pony", "potato", "prism", "puzzle", "quail",
	"quiet", "radar", "raft", "razor", "reef", "relay", "rhino", "ribbon", "riddle", "robot",
	"rocket", "roof", "rubber", "rudder", "saddle", "sandal", "satin", "scarf", "school", "sheep",
	"shovel", "silver", "siren", "sketch", "skull", "snake", "soap", "socket", "solar", "sonar",
	"spoon", "stamp", "steam", "string", "summer", "swan", "taco", "teapot", "temple", "ticket",
	"tiger", "toast", "tonic", "topaz", "tower", "tunnel", "turtle", "twig", "upland", "urchin",
	"utopia", "vacuum", "velvet", "vessel", "video", "violin", "vodka", "voyage", "wagon", "wand",
	"water", "whale", "wheat", "window", "wolf", "wombat", "yacht", "yeast", "yellow", "yoyo",
	"zenith", "zero", "zipper",
}
