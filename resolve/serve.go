package resolve

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
)

// ServeHandler publishes the certificates in dir as an HTTP root: a GET or
// HEAD of /.well-known/smartclient/SERVICE.cert serves dir/SERVICE.cert.
// Every other path is 404. Files are read on each request (so replacing
// a file publishes a new version at once) with the same bounds as DirRoot;
// nothing outside dir is reachable because service names cannot contain
// '/' or start with '.'. The certificates are signed, so the handler needs
// no authentication; mount it with http.StripPrefix to serve it under a
// path prefix.
func ServeHandler(dir string) http.Handler {
	root := &DirRoot{Dir: dir}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file, ok := strings.CutPrefix(r.URL.Path, WellKnownPrefix)
		service, ok2 := strings.CutSuffix(file, CertSuffix)
		if !ok || !ok2 || CheckService(service) != nil {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		data, err := root.Fetch(r.Context(), service)
		switch {
		case errors.Is(err, ErrNotFound):
			http.NotFound(w, r)
			return
		case err != nil:
			// The reason stays on the server: it names local paths.
			http.Error(w, "certificate unavailable", http.StatusInternalServerError)
			return
		}
		sum := sha256.Sum256(data)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	})
}
