//go:build tools

// Imports what test/kube/build.sh builds, so that `go mod tidy` records it in go.sum.
package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"
