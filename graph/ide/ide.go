// Package ide serves the GraphiQL IDE from files embedded in the binary, so it
// works with no network: gqlgen's stock playground loads its scripts from
// cdn.jsdelivr.net and stays on "Loading…" offline.
//
// The page is gqlgen's own GraphiQL 4 page with every asset URL pointed at
// /ide/..., where Assets serves the unmodified npm files with the same SRI
// hashes gqlgen pins. fetch-assets.sh refreshes them. The package imports only
// the standard library and gqlgen.
package ide

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql/playground"
)

// Prefix is the URL path under which Assets must be mounted.
const Prefix = "/ide/"

//go:embed assets
var assets embed.FS

// asset is one embedded file the page loads, with its Subresource Integrity
// hash; the hashes are checked by fetch-assets.sh and ide_test.go.
type asset struct {
	path string // below Prefix
	sri  string
}

var (
	graphiqlJS  = asset{"graphiql/graphiql.min.js", "sha256-hnImuor1znlJkD/FOTL3jayfS/xsyNoP04abi8bFJWs="}
	graphiqlCSS = asset{"graphiql/graphiql.min.css", "sha256-MEh+B2NdMSpj9kexQNN3QKc8UzMrCXW/Sx/phcpuyIU="}
	reactJS     = asset{"react/react.production.min.js", "sha256-S0lp+k7zWUMk2ixteM6HZvu8L9Eh//OVrt+ZfbCpmgY="}
	reactDOMJS  = asset{"react-dom/react-dom.production.min.js", "sha256-IXWO0ITNDjfnNXIu5POVfqlgYoop36bDzhodR6LW5Pc="}
	explorerJS  = asset{"explorer/index.umd.js", "sha256-UM8sWOS0Xa9yLY85q6Clh0pF4qpxX+TOcJ41flECqBs="}
	// Not gqlgen's pin: jsdelivr serves a CDN-minified style.min.css that is
	// not in the npm package, so the page uses dist/style.css.
	explorerCSS = asset{"explorer/style.css", "sha256-aJCaSuI7+t/EWRrLTis8jU9EFTua5/o7fnwxnroxDvE="}
)

func (a asset) url() string { return Prefix + a.path }

// contentSecurityPolicy lets the page reach only its own origin: scripts,
// styles and fetches from 'self' (which covers ws:// to the same host), plus
// the inline bootstrap script and the inline styles GraphiQL sets.
const contentSecurityPolicy = "default-src 'self'; script-src 'self' 'unsafe-inline'; " +
	"style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler returns the GraphiQL page for the GraphQL endpoint, a path such as
// "/graphql". HTTP requests go to that path on the page's own origin and
// subscriptions to ws(s):// on the same host and path. Mount it at "/" (for
// example as "GET /{$}") and Assets at Prefix.
func Handler(title, endpoint string) http.Handler {
	page := playground.Handler(title, endpoint,
		playground.WithGraphiqlVersion(graphiqlJS.url(), graphiqlCSS.url(), graphiqlJS.sri, graphiqlCSS.sri),
		playground.WithGraphiqlReactVersion(reactJS.url(), reactDOMJS.url(), reactJS.sri, reactDOMJS.sri),
		playground.WithGraphiqlPluginExplorerVersion(explorerJS.url(), explorerCSS.url(), explorerJS.sri, explorerCSS.sri),
		playground.WithGraphiqlEnablePluginExplorer(true),
		playground.WithStoragePrefix("ordertrail:"),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		page(w, r)
	})
}

// Assets returns a handler for the embedded IDE files; it expects the full
// request path, so mount it as mux.Handle(ide.Prefix, ide.Assets()).
// Directory listings are not served.
func Assets() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	etags, err := contentETags(sub)
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		etag, ok := etags[name]
		if !ok {
			http.NotFound(w, r) // also hides directory listings
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		// Embedded files have no modification time and their names no
		// version, so browsers revalidate with the content hash.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		files.ServeHTTP(w, r)
	})
}

// contentETags maps every file in fsys to a strong ETag of its content.
func contentETags(fsys fs.FS) (map[string]string, error) {
	etags := make(map[string]string)
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags[path] = `"` + base64.RawURLEncoding.EncodeToString(sum[:]) + `"`
		return nil
	})
	return etags, err
}
