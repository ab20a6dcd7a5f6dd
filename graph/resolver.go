package graph

// Resolver holds the dependencies of the resolvers; it has no state of its own.
type Resolver struct {
	Deps
	metrics *Metrics
}
