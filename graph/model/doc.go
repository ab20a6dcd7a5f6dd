// Package model holds the GraphQL types: those gqlgen generates from the
// schema (models_gen.go) and the hand-written scalars and payloads that
// gqlgen.yml binds to.
package model
