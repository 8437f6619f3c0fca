//go:build tools

// Imports what test/kube/build.sh builds, so that `go mod tidy` records it in go.sum.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
