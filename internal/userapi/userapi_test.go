package userapi

import (
	"bytes"
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

type fakeServer struct {
	UnimplementedUserAPIServer
	manifest []byte
}

func (s *fakeServer) GetManifests(context.Context, *GetManifestsRequest) (*GetManifestsResponse, error) {
	return &GetManifestsResponse{Manifests: [][]byte{s.manifest}, RootCA: []byte("root"), MeshCA: []byte("mesh")}, nil
}

func (s *fakeServer) SetManifest(_ context.Context, req *SetManifestRequest) (*SetManifestResponse, error) {
	s.manifest = req.GetManifest()
	return &SetManifestResponse{RootCA: []byte("root"), MeshCA: []byte("mesh")}, nil
}

func serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	impl := &fakeServer{manifest: []byte("m0")}
	s.RegisterService(&UserAPI_ServiceDesc, impl)
	s.RegisterService(LegacyServiceDesc(), impl)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestCurrentAndLegacyNames(t *testing.T) {
	conn := serve(t)
	ctx := t.Context()

	current := NewUserAPIClient(conn)
	if _, err := current.SetManifest(ctx, &SetManifestRequest{Manifest: []byte("m1")}); err != nil {
		t.Fatal(err)
	}
	resp, err := current.GetManifests(ctx, &GetManifestsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetManifests(); len(got) != 1 || string(got[0]) != "m1" {
		t.Fatalf("manifests %q", got)
	}

	legacy := NewLegacyClient(conn)
	lresp, err := legacy.GetManifests(ctx, &GetManifestsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if string(lresp.GetRootCA()) != "root" || string(lresp.GetManifests()[0]) != "m1" {
		t.Fatalf("legacy response %v", lresp)
	}
	if _, err := legacy.SetManifest(ctx, &SetManifestRequest{Manifest: []byte("m2")}); err != nil {
		t.Fatal(err)
	}
	// The legacy service never had Recover.
	err = conn.Invoke(ctx, "/userapi.UserAPI/Recover", &RecoverRequest{}, &RecoverResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("legacy Recover: %v, want Unimplemented", err)
	}
	if _, err := current.Recover(ctx, &RecoverRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Recover on fake: %v", err)
	}
}

// The field numbers and wire types are the contract with real Coordinators.
func TestWireNumbers(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		want []protowire.Number
	}{
		{
			name: "GetManifestsResponse",
			msg: &GetManifestsResponse{
				Manifests: [][]byte{{1}}, Policies: [][]byte{{2}}, RootCA: []byte{3}, MeshCA: []byte{4},
				LatestTransition: &LatestTransition{TransitionHash: []byte{5}},
			},
			want: []protowire.Number{1, 2, 3, 4, 5},
		},
		{name: "SetManifestRequest", msg: &SetManifestRequest{Manifest: []byte{1}, Policies: [][]byte{{2}}}, want: []protowire.Number{1, 2}},
		{
			name: "SetManifestResponse",
			msg:  &SetManifestResponse{RootCA: []byte{1}, MeshCA: []byte{2}, SeedSharesDoc: &SeedShareDocument{Salt: []byte{3}}},
			want: []protowire.Number{1, 2, 3},
		},
		{name: "RecoverRequest", msg: &RecoverRequest{Seed: []byte{1}, Salt: []byte{2}, Force: true}, want: []protowire.Number{1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			var got []protowire.Number
			for len(b) > 0 {
				num, typ, n := protowire.ConsumeTag(b)
				if n < 0 {
					t.Fatal(protowire.ParseError(n))
				}
				b = b[n:]
				m := protowire.ConsumeFieldValue(num, typ, b)
				if m < 0 {
					t.Fatal(protowire.ParseError(m))
				}
				b = b[m:]
				got = append(got, num)
			}
			if !bytes.Equal(numBytes(got), numBytes(tc.want)) {
				t.Fatalf("field numbers %v, want %v", got, tc.want)
			}
		})
	}
}

func numBytes(ns []protowire.Number) []byte {
	var b []byte
	for _, n := range ns {
		b = protowire.AppendVarint(b, uint64(n))
	}
	return b
}
