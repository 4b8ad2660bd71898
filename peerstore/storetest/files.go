package storetest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2pkex/p2pkex/peerstore"
)

// SecretWindow is the length of the pieces of a secret that
// RequireNoSecretInFiles looks for: any 8 consecutive bytes of a secret
// found in a file count as a leak (a chance match of 8 random bytes in a
// few megabytes is about 2^-40).
const SecretWindow = 8

// RequireNoSecretInFiles reads the raw bytes of every file under dir (the
// store file with its free pages, the key file, any temporary or backup
// file) and fails if any SecretWindow consecutive bytes of any of the
// secrets occur in one. what names the secrets in the failure.
func RequireNoSecretInFiles(t testing.TB, dir, what string, secrets ...[]byte) {
	t.Helper()
	for _, f := range FindSecretsInFiles(t, dir, secrets...) {
		t.Errorf("%s: %d bytes of secret %d found in %s at offset %d", what, SecretWindow, f.Secret, f.File, f.Offset)
	}
	for _, f := range RecoverableSecrets(t, dir, secrets...) {
		t.Errorf("%s: secret %d recoverable from the sealed value at offset %d of %s with the key file", what, f.Secret, f.Offset, f.File)
	}
}

// RecoverableSecrets returns the secrets that the files under dir still
// give away to someone who reads them: every place in a file other than the
// key file that looks like a sealed value (a slot number naming a non-zero
// slot of peerstore.KeysFileName, then a 12-byte nonce) is decrypted with
// that slot's key as AES-GCM decrypts (the counter-mode half of GCM; an
// attacker need not check the tag, nor know the additional data), and a
// result that starts with 16 bytes of a secret counts. It is an
// independent reading of the format documented in peerstore/shred.go.
func RecoverableSecrets(t testing.TB, dir string, secrets ...[]byte) []Found {
	t.Helper()
	keys, err := os.ReadFile(filepath.Join(dir, peerstore.KeysFileName))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	const slot, nonce = 32, 12
	nslots := uint64(len(keys) / slot)
	var found []Found
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == peerstore.KeysFileName {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for off := 0; off+8+nonce+16 <= len(b); off++ {
			n := binary.BigEndian.Uint64(b[off:])
			if n == 0 || n >= nslots {
				continue
			}
			key := keys[n*slot : (n+1)*slot]
			if bytes.Equal(key, make([]byte, slot)) {
				continue
			}
			block, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			iv := make([]byte, 16)
			copy(iv, b[off+8:off+8+nonce])
			iv[15] = 2 // GCM encrypts from inc32(nonce || 0x00000001)
			pt := make([]byte, 16)
			cipher.NewCTR(block, iv).XORKeyStream(pt, b[off+8+nonce:off+8+nonce+16])
			for i, s := range secrets {
				if len(s) >= 16 && bytes.Equal(pt, s[:16]) {
					found = append(found, Found{Secret: i, File: filepath.Base(path), Offset: off})
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// Found is where FindSecretsInFiles found a piece of a secret.
type Found struct {
	Secret int // index in the secrets given
	File   string
	Offset int
}

// FindSecretsInFiles returns where pieces of the secrets occur in the files
// under dir (the first piece found per secret and file).
func FindSecretsInFiles(t testing.TB, dir string, secrets ...[]byte) []Found {
	t.Helper()
	var found []Found
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, s := range secrets {
			for off := 0; off+SecretWindow <= len(s); off++ {
				if at := bytes.Index(b, s[off:off+SecretWindow]); at >= 0 {
					found = append(found, Found{Secret: i, File: filepath.Base(path), Offset: at})
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// RandBytes returns n random bytes.
func RandBytes(t testing.TB, n int) []byte { return randBytes(t, n) }
