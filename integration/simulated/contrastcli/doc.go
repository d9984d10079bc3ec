// Package contrastcli is a client that behaves like the Contrast CLI towards
// a Coordinator's port 1313, so tests see the error texts users see. It
// mirrors Contrast's pieces rather than ccproxy's: the aTLS client (package
// atls), validators built from manifest reference values with go-sev-guest's
// and go-tdx-guest's verify and validate called directly, the CLI's error
// wrapping ("with AtlsConnectionNonce <hex>:  validator snp-0-MILAN failed:
// ..."), gRPC's wrapping ("rpc error: code = Unavailable desc = connection
// error: desc = \"transport: authentication handshake failed: ...\""), and
// `contrast verify`'s manifest comparison.
//
//	res, err := contrastcli.Verify(ctx, "127.0.0.1:1313", contrastcli.Options{
//		Manifest:    manifestJSON,
//		SNPRootsPEM: authority.SNPRootsPEM(),
//		Timeout:     5 * time.Second,
//	})
//	if err != nil {
//		fmt.Println(err) // exactly what the CLI would print after "Error: "
//	}
//
// Two deliberate differences from the real CLI: verification never fetches
// from AMD or Intel unless Options.Online is set, and the SNP ID block is not
// required (Contrast derives the expected ID key with code outside any
// library; simulated evidence has no ID block).
package contrastcli
