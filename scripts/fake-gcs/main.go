// Google Cloud Storage for the tests: fake-gcs-server (github.com/fsouza/fake-gcs-server, the
// emulator in common use) run in memory, with the XML-API calls object_store makes and
// fake-gcs-server does not route (its issue #331, pull request #1164; object_store's own CI ran
// a fork for them) translated onto fake-gcs-server's JSON API, so storage, generations and
// preconditions stay fake-gcs-server's own:
//
//   - PUT /{bucket}/{object} (an XML-API upload) becomes a media upload, with
//     x-goog-if-generation-match as ifGenerationMatch (0: create only, 412 when the object
//     exists); the answer carries ETag and x-goog-generation as GCS's XML API does.
//   - GET /{bucket}?list-type=2: fake-gcs-server lists every key, whatever start-after says;
//     keys at or before it are dropped, and ETags quoted as GCS and a HEAD give them.
//
// Copies (x-goog-copy-source) and XML multipart uploads are refused with 501: the sink's tests
// keep files below s3.multipart_part_bytes. Everything else goes to fake-gcs-server unchanged.
//
//	fake-gcs -port 4443 -bucket datalake
package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

type shim struct{ inner http.Handler }

// split returns the bucket and the (unescaped) object of an XML-API path; object is empty for
// a path that names only the bucket.
func split(r *http.Request) (bucket, object string, err error) {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	b, o, _ := strings.Cut(p, "/")
	if bucket, err = url.PathUnescape(b); err != nil {
		return "", "", err
	}
	object, err = url.PathUnescape(o)
	return bucket, object, err
}

func xmlError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message></Error>", code, message)
}

func (s shim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if strings.HasPrefix(r.URL.Path, "/storage/") || strings.HasPrefix(r.URL.Path, "/upload/") || strings.HasPrefix(r.URL.Path, "/download/") || strings.HasPrefix(r.URL.Path, "/_internal/") || r.URL.Path == "/" {
		s.inner.ServeHTTP(w, r)
		return
	}
	bucket, object, err := split(r)
	if err != nil {
		xmlError(w, http.StatusBadRequest, "InvalidURI", err.Error())
		return
	}
	switch {
	case q.Has("uploads") || q.Has("uploadId"):
		xmlError(w, http.StatusNotImplemented, "NotImplemented", "XML multipart uploads are not emulated")
	case r.Method == http.MethodPut && object != "" && r.Header.Get("x-goog-copy-source") != "":
		xmlError(w, http.StatusNotImplemented, "NotImplemented", "XML copies are not emulated")
	case r.Method == http.MethodPut && object != "" && q.Get("uploadType") == "" && q.Get("X-Goog-Algorithm") == "":
		s.put(w, r, bucket, object)
	case r.Method == http.MethodGet && object == "" && q.Get("list-type") == "2":
		s.list(w, r, q.Get("start-after"))
	default:
		s.inner.ServeHTTP(w, r)
	}
}

func (s shim) put(w http.ResponseWriter, r *http.Request, bucket, object string) {
	q := url.Values{"uploadType": {"media"}, "name": {object}}
	if g := r.Header.Get("x-goog-if-generation-match"); g != "" {
		q.Set("ifGenerationMatch", g)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "/upload/storage/v1/b/"+url.PathEscape(bucket)+"/o?"+q.Encode(), r.Body)
	if err != nil {
		xmlError(w, http.StatusBadRequest, "InvalidArgument", err.Error())
		return
	}
	req.Host = r.Host
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	req.Header.Set("Content-Type", ct)
	rec := httptest.NewRecorder()
	s.inner.ServeHTTP(rec, req)
	switch {
	case rec.Code == http.StatusPreconditionFailed:
		xmlError(w, rec.Code, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
		return
	case rec.Code == http.StatusNotFound:
		xmlError(w, rec.Code, "NoSuchBucket", "The specified bucket does not exist.")
		return
	case rec.Code != http.StatusOK:
		xmlError(w, rec.Code, "InternalError", strings.TrimSpace(rec.Body.String()))
		return
	}
	var created struct {
		Etag       string `json:"etag"`
		Generation string `json:"generation"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("ETag", strconv.Quote(created.Etag))
	w.Header().Set("x-goog-generation", created.Generation)
	w.Header().Set("x-goog-metageneration", "1")
	w.WriteHeader(http.StatusOK)
}

func (s shim) list(w http.ResponseWriter, r *http.Request, startAfter string) {
	rec := httptest.NewRecorder()
	s.inner.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	var res fakestorage.ListBucketResult
	if err := xml.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	kept := res.Contents[:0]
	for _, c := range res.Contents {
		if c.Key > startAfter {
			if !strings.HasPrefix(c.ETag.Value, `"`) {
				c.ETag.Value = strconv.Quote(c.ETag.Value)
			}
			kept = append(kept, c)
		}
	}
	prefixes := res.CommonPrefixes[:0]
	for _, p := range res.CommonPrefixes {
		if p.Prefix > startAfter {
			prefixes = append(prefixes, p)
		}
	}
	res.Contents, res.CommonPrefixes, res.KeyCount = kept, prefixes, len(kept)
	var out bytes.Buffer
	out.WriteString(xml.Header)
	if err := xml.NewEncoder(&out).Encode(res); err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.Bytes())
}

func main() {
	port := flag.Int("port", 4443, "port on 127.0.0.1")
	bucket := flag.String("bucket", "datalake", "bucket created at start")
	flag.Parse()
	host := fmt.Sprintf("127.0.0.1:%d", *port)
	server, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener:  true,
		Scheme:      "http",
		PublicHost:  host,
		ExternalURL: "http://" + host,
	})
	if err != nil {
		log.Fatalf("fake-gcs-server: %v", err)
	}
	server.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: *bucket})
	log.Printf("GCS emulator on http://%s (bucket %s)", host, *bucket)
	log.Fatal(http.ListenAndServe(host, shim{inner: server.HTTPHandler()}))
}
