package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/p2pkex/p2pkex/api"
)

// printQR shows what "p2pkex id --qr" encodes: the first full address that
// is not loopback (else the first), or the peer ID when there is none.
func printQR(w io.Writer, id *api.ID) {
	text := id.PeerID
	if len(id.Addrs) > 0 {
		text = id.Addrs[0]
		if i := slices.IndexFunc(id.Addrs, func(a string) bool {
			return !strings.HasPrefix(a, "/ip4/127.") && !strings.HasPrefix(a, "/ip6/::1/")
		}); i >= 0 {
			text = id.Addrs[i]
		}
	}
	printQRText(w, text)
}

// printQRText draws text as a QR code in the terminal.
func printQRText(w io.Writer, text string) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		fmt.Fprintf(w, "(no QR code: %v)\n", err)
		return
	}
	fmt.Fprintf(w, "\n%s", q.ToSmallString(false))
	fmt.Fprintf(w, "QR code of %s\n", text)
}
