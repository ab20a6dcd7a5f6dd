package ide

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// newMux mounts the IDE the way server.go does.
func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", Handler("ordertrail", "/graphql"))
	mux.Handle(Prefix, Assets())
	return mux
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

var (
	// Every URL-valued attribute in the page.
	urlAttr = regexp.MustCompile(`\b(?:src|href|action)\s*=\s*"([^"]*)"`)
	// A script or stylesheet with its integrity attribute, as gqlgen writes them.
	sriRef = regexp.MustCompile(`\b(?:src|href)="([^"]*)"\s+integrity="([^"]*)"`)
	// Anything that looks like an absolute URL, anywhere in the page.
	absURL = regexp.MustCompile(`(?i)\b(?:https?|wss?):\\?/\\?/|["'(]\s*//[a-z0-9]`)
)

func TestPageReferencesOnlyLocalURLs(t *testing.T) {
	rec := get(t, newMux(), "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET / = %d, want 200", rec.Code)
	}
	page := rec.Body.String()
	if m := absURL.FindString(page); m != "" {
		t.Errorf("page contains an absolute URL near %q; every request must stay on the page's origin", m)
	}
	refs := urlAttr.FindAllStringSubmatch(page, -1)
	if len(refs) == 0 {
		t.Fatal("page references no assets; did gqlgen's template change?")
	}
	for _, m := range refs {
		if ref := html.UnescapeString(m[1]); !strings.HasPrefix(ref, Prefix) {
			t.Errorf("page references %q, want a path under %s", ref, Prefix)
		}
	}
	for _, want := range []string{
		// HTTP to the page's own origin, subscriptions over ws(s):// to the same host.
		`const url = location.protocol + '//' + location.host + "/graphql";`,
		`const subscriptionUrl = wsProto + '//' + location.host + "/graphql";`,
		`GraphiQL.createFetcher({ url, subscriptionUrl`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy = %q, want default-src 'self'", csp)
	}
}

func TestReferencedAssetsMatchTheirSRI(t *testing.T) {
	mux := newMux()
	page := get(t, mux, "/").Body.String()
	refs := sriRef.FindAllStringSubmatch(page, -1)
	seen := make(map[string]bool)
	for _, m := range refs {
		url, integrity := html.UnescapeString(m[1]), html.UnescapeString(m[2])
		seen[url] = true
		t.Run(url, func(t *testing.T) {
			rec := get(t, mux, url)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", url, rec.Code)
			}
			if got := sri(t, integrity, rec.Body.Bytes()); got != integrity {
				t.Errorf("GET %s: body hashes to %s, page pins %s", url, got, integrity)
			}
			ct := rec.Header().Get("Content-Type")
			wantCT := map[bool]string{true: "text/javascript", false: "text/css"}[strings.HasSuffix(url, ".js")]
			if !strings.HasPrefix(ct, wantCT) {
				t.Errorf("GET %s: Content-Type %q, want %s", url, ct, wantCT)
			}
		})
	}
	for _, a := range []asset{graphiqlJS, graphiqlCSS, reactJS, reactDOMJS, explorerJS, explorerCSS} {
		if !seen[a.url()] {
			t.Errorf("page does not load %s with an integrity attribute", a.url())
		}
	}
}

// sri hashes body with the algorithm named in want ("sha256-…", "sha384-…").
func sri(t *testing.T, want string, body []byte) string {
	t.Helper()
	alg, _, _ := strings.Cut(want, "-")
	var h hash.Hash
	switch alg {
	case "sha256":
		h = sha256.New()
	case "sha384":
		h = sha512.New384()
	case "sha512":
		h = sha512.New()
	default:
		t.Fatalf("unknown SRI algorithm in %q", want)
	}
	h.Write(body)
	return alg + "-" + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func TestAssetsServeOnlyFiles(t *testing.T) {
	mux := newMux()
	for _, path := range []string{"/ide/", "/ide/graphiql/", "/ide/nope.js", "/ide/graphiql/../../ide.go"} {
		if rec := get(t, Assets(), path); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, rec.Code)
		}
	}

	rec := get(t, mux, reactJS.url())
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatalf("GET %s: no ETag", reactJS.url())
	}
	req := httptest.NewRequest(http.MethodGet, reactJS.url(), nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("GET %s with If-None-Match = %d, want 304", reactJS.url(), rec.Code)
	}
}

func TestHandlerRejectsOtherMethods(t *testing.T) {
	srv := httptest.NewServer(Handler("ordertrail", "/graphql"))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
}
