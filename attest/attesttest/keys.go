package attesttest

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
)

// The fake AMD hierarchy's keys: go-sev-guest's test keys
// (testing/data/keys, Apache License 2.0, see keys/NOTICE), parsed on
// first use. Importing go-sev-guest's testing/data instead would parse
// them, RSA-4096 precomputation included, in its package init: a few
// milliseconds every ccproxy command would pay at start-up because the
// demo links this package.
var (
	//go:embed keys/ark_private_key.pem
	arkKeyPEM []byte
	//go:embed keys/ask_private_key.pem
	askKeyPEM []byte
	//go:embed keys/vcek_private_key.pem
	vcekKeyPEM []byte
)

type snpKeys struct {
	ark, ask *rsa.PrivateKey
	vcek     *ecdsa.PrivateKey
}

var loadSNPKeys = sync.OnceValues(func() (snpKeys, error) {
	var k snpKeys
	var err error
	if k.ark, err = parseKey[*rsa.PrivateKey]("ARK", arkKeyPEM); err != nil {
		return k, err
	}
	if k.ask, err = parseKey[*rsa.PrivateKey]("ASK", askKeyPEM); err != nil {
		return k, err
	}
	k.vcek, err = parseKey[*ecdsa.PrivateKey]("VCEK", vcekKeyPEM)
	return k, err
})

func parseKey[K any](name string, pemBytes []byte) (K, error) {
	var zero K
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return zero, errors.New("attesttest: " + name + " key: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return zero, fmt.Errorf("attesttest: %s key: %w", name, err)
	}
	k, ok := key.(K)
	if !ok {
		return zero, fmt.Errorf("attesttest: %s key is a %T", name, key)
	}
	return k, nil
}
