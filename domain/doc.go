// Package domain holds the Order aggregate, the commands it accepts and the
// events it raises. It is pure Go: it imports only the standard library, does
// no I/O and never reads the clock or a random source; time and identifiers
// are passed in by the caller.
//
// Packages eventing and readstore import domain; domain imports nothing from
// this module.
package domain
