package coordinator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/internal/userapi"
)

// The user API's error texts, as the Coordinator's authority package has them.
const (
	msgNoManifest    = "no manifest configured"
	msgNeedsRecovery = "coordinator is in recovery mode"
	msgRecovered     = "coordinator is already recovered"
)

// msgAPIError is FaultAPIError's GetManifests error: the form of the
// Coordinator's own `status.Errorf(codes.Internal, "getting history: %v",
// err)` when its ConfigMap history store is denied by Kubernetes RBAC (the
// error text is client-go's Forbidden). No state ccproxy names looks like it.
const msgAPIError = `getting history: getting latest transition: configmaps "contrast-store-transitions-latest" is forbidden: ` +
	`User "system:serviceaccount:contrast:coordinator" cannot get resource "configmaps" in API group "" in the namespace "contrast"`

// userAPI serves the user API from the Coordinator's state and fault.
type userAPI struct {
	userapi.UnimplementedUserAPIServer
	c *Coordinator
}

func (u *userAPI) GetManifests(context.Context, *userapi.GetManifestsRequest) (*userapi.GetManifestsResponse, error) {
	c := u.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.fault == FaultRecoveryMode:
		// Older Coordinators wrap the authority's ErrNeedsRecovery like this.
		return nil, status.Errorf(codes.Internal, "syncing internal state: %s", msgNeedsRecovery)
	case c.fault == FaultRecoveryModeGuard:
		// Newer Coordinators answer from the state guard (ErrStaleState).
		return nil, status.Error(codes.FailedPrecondition, msgNeedsRecovery)
	case c.fault == FaultAPIError:
		return nil, status.Error(codes.Internal, msgAPIError)
	case c.fault == FaultNoManifest || len(c.manifests) == 0:
		return nil, status.Error(codes.FailedPrecondition, msgNoManifest)
	}
	manifests := cloneAll(c.manifests)
	if c.fault == FaultManifestDiffers {
		manifests[len(manifests)-1] = differentManifest(manifests[len(manifests)-1])
	}
	return &userapi.GetManifestsResponse{
		Manifests: manifests,
		Policies:  cloneAll(c.policies),
		RootCA:    bytes.Clone(c.rootCA),
		MeshCA:    bytes.Clone(c.meshCA),
	}, nil
}

func (u *userAPI) SetManifest(ctx context.Context, req *userapi.SetManifestRequest) (*userapi.SetManifestResponse, error) {
	c := u.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fault == FaultRecoveryMode || c.fault == FaultRecoveryModeGuard {
		return nil, status.Error(codes.FailedPrecondition, msgNeedsRecovery)
	}
	var m struct{ WorkloadOwnerKeyDigests []string }
	if err := json.Unmarshal(req.GetManifest(), &m); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "unmarshaling manifest: %v", err)
	}
	initial := c.fault == FaultNoManifest || len(c.manifests) == 0
	if !initial {
		// A subsequent SetManifest must come from a workload owner of the
		// current manifest, identified by the client certificate's key.
		var cur struct{ WorkloadOwnerKeyDigests []string }
		_ = json.Unmarshal(c.manifests[len(c.manifests)-1], &cur)
		if err := validatePeer(ctx, cur.WorkloadOwnerKeyDigests); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "validating peer: %v", err)
		}
	}
	if initial {
		c.manifests = nil
		c.fault = FaultNone
	}
	c.manifests = append(c.manifests, bytes.Clone(req.GetManifest()))
	c.policies = cloneAll(req.GetPolicies())
	return &userapi.SetManifestResponse{RootCA: bytes.Clone(c.rootCA), MeshCA: bytes.Clone(c.meshCA)}, nil
}

func (u *userAPI) Recover(context.Context, *userapi.RecoverRequest) (*userapi.RecoverResponse, error) {
	c := u.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.fault == FaultRecoveryMode || c.fault == FaultRecoveryModeGuard:
		c.fault = FaultNone
		return &userapi.RecoverResponse{}, nil
	case c.fault == FaultNoManifest || len(c.manifests) == 0:
		return nil, status.Error(codes.FailedPrecondition, "no state to recover from")
	default:
		return nil, status.Error(codes.FailedPrecondition, msgRecovered)
	}
}

// validatePeer is the Coordinator's check that the caller's client
// certificate key is one of the manifest's workload owner keys.
func validatePeer(ctx context.Context, keyDigests []string) error {
	if len(keyDigests) == 0 {
		return errors.New("setting manifest is disabled")
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return errors.New("no peer found in context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return errors.New("no peer certificates found")
	}
	var der []byte
	switch pub := info.State.PeerCertificates[0].PublicKey.(type) {
	case *rsa.PublicKey:
		der = x509.MarshalPKCS1PublicKey(pub)
	case *ecdsa.PublicKey:
		var err error
		if der, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported peer public key type %T", pub)
	}
	sum := sha256.Sum256(der)
	for _, d := range keyDigests {
		if want, err := hex.DecodeString(d); err == nil && bytes.Equal(want, sum[:]) {
			return nil
		}
	}
	return errors.New("peer not authorized")
}

// differentManifest returns a valid manifest that differs from m: one more
// (non-coordinator) policy entry.
func differentManifest(m []byte) []byte {
	var doc map[string]any
	if err := json.Unmarshal(m, &doc); err != nil || doc == nil {
		return append(bytes.Clone(m), ' ')
	}
	policies, _ := doc["Policies"].(map[string]any)
	if policies == nil {
		policies = map[string]any{}
	}
	h := sha256.Sum256(m)
	policies[hex.EncodeToString(h[:])] = map[string]any{"SANs": []string{"unexpected-workload"}}
	doc["Policies"] = policies
	out, err := json.Marshal(doc)
	if err != nil {
		return append(bytes.Clone(m), ' ')
	}
	return out
}

func cloneAll(in [][]byte) [][]byte {
	if in == nil {
		return nil
	}
	out := make([][]byte, len(in))
	for i, b := range in {
		out[i] = bytes.Clone(b)
	}
	return out
}

// newCAs creates the root and mesh CA certificates GetManifests returns (PEM),
// named like Contrast's.
func newCAs() (rootPEM, meshPEM []byte, err error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	meshKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "system:coordinator:root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating root CA: %w", err)
	}
	mesh := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "system:coordinator:intermediate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	meshDER, err := x509.CreateCertificate(rand.Reader, mesh, root, &meshKey.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating mesh CA: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: meshDER}), nil
}
