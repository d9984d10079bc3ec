package userapi

import (
	"context"

	"google.golang.org/grpc"
)

// Older Coordinators and CLIs declared the service in the proto package
// "userapi", so their full method names lack the "edgelesssys.contrast."
// prefix. They had no Recover.
const (
	LegacyServiceName                = "userapi.UserAPI"
	LegacySetManifestFullMethodName  = "/userapi.UserAPI/SetManifest"
	LegacyGetManifestsFullMethodName = "/userapi.UserAPI/GetManifests"
)

// LegacyServiceDesc is UserAPI_ServiceDesc under the older service name,
// without Recover. Register it next to the current one to answer both
// generations of clients:
//
//	s.RegisterService(&userapi.UserAPI_ServiceDesc, impl)
//	s.RegisterService(userapi.LegacyServiceDesc(), impl)
func LegacyServiceDesc() *grpc.ServiceDesc {
	desc := UserAPI_ServiceDesc
	desc.ServiceName = LegacyServiceName
	desc.Methods = nil
	for _, m := range UserAPI_ServiceDesc.Methods {
		if m.MethodName == "Recover" {
			continue
		}
		desc.Methods = append(desc.Methods, m)
	}
	return &desc
}

// LegacyClient calls the older service name, as a CLI from before the rename
// does. It is the subset of UserAPIClient that service had.
type LegacyClient struct {
	cc grpc.ClientConnInterface
}

// NewLegacyClient returns a client of the older service name on cc.
func NewLegacyClient(cc grpc.ClientConnInterface) *LegacyClient {
	return &LegacyClient{cc: cc}
}

// SetManifest calls /userapi.UserAPI/SetManifest.
func (c *LegacyClient) SetManifest(ctx context.Context, in *SetManifestRequest, opts ...grpc.CallOption) (*SetManifestResponse, error) {
	out := new(SetManifestResponse)
	if err := c.cc.Invoke(ctx, LegacySetManifestFullMethodName, in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

// GetManifests calls /userapi.UserAPI/GetManifests.
func (c *LegacyClient) GetManifests(ctx context.Context, in *GetManifestsRequest, opts ...grpc.CallOption) (*GetManifestsResponse, error) {
	out := new(GetManifestsResponse)
	if err := c.cc.Invoke(ctx, LegacyGetManifestsFullMethodName, in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}
