// Package graph is the GraphQL API: the schema (schema.graphqls), its
// resolvers, and the HTTP and websocket server built around them with its
// limits, auth, error presenter, dataloaders and metrics. Resolvers are
// small: they turn arguments into domain commands run through the
// repository, and answer queries from the read model.
//
// Generated code (generated.go, model/models_gen.go) comes from
// `go generate ./...` and is never edited by hand.
//
// Dependency rule: graph imports domain, eventing and readstore; nothing
// in this module imports graph except the wiring in package main.
package graph
