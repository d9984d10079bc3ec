// Package userapi is Contrast's Coordinator user API (gRPC service
// edgelesssys.contrast.userapi.UserAPI on port 1313): SetManifest,
// GetManifests and Recover, generated from userapi.proto, which copies
// Contrast's message and field numbers so it is wire compatible with real
// Coordinators and CLIs.
//
// Older Coordinators registered the same service under the proto package
// "userapi"; LegacyServiceDesc and the Legacy* method names serve and call it
// there. The messages are wire compatible (older field names CACert and
// IntermCert have the numbers of RootCA and MeshCA).
//
//	conn, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
//	resp, err := userapi.NewUserAPIClient(conn).GetManifests(ctx, &userapi.GetManifestsRequest{})
//
// Regenerate after editing userapi.proto (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc on PATH; CI does not run it, the generated files are
// committed):
//
//	cd userapi && protoc --go_out=. --go_opt=paths=source_relative \
//	  --go-grpc_out=. --go-grpc_opt=paths=source_relative userapi.proto
package userapi

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative userapi.proto
