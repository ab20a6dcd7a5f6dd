//go:build tools

// Package main pins the code generators used by go generate, so that
// `go mod tidy` keeps them and every developer runs the same version.
package main

import (
	_ "github.com/99designs/gqlgen"
)
