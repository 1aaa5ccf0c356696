// Google Cloud Storage for the tests: fake-gcs-server (github.com/fsouza/fake-gcs-server, the
// emulator in common use) run in memory, with the XML-API calls object_store makes and
// fake-gcs-server does not route (its issue #331, pull request #1164; object_store's own CI ran
// a fork for them) translated onto fake-gcs-server's JSON API, so storage, generations and
// preconditions stay fake-gcs-server's own:
//
//   - PUT /{bucket}/{object} (an XML-API upload) becomes a media upload, with
//     x-goog-if-generation-match as ifGenerationMatch (0: create only, 412 when the object
//     exists); the answer carries ETag and x-goog-generation as GCS's XML API does.
//
//   - GET /{bucket}?list-type=2: fake-gcs-server lists every key, whatever start-after says;
//     keys at or before it are dropped, and ETags quoted as GCS and a HEAD give them.
//
//   - XML multipart uploads (POST ?uploads, PUT ?partNumber&uploadId, POST ?uploadId, DELETE
//     ?uploadId): parts are held here and the completed object is one media upload of them in
//     order; a part missing or with another ETag is InvalidPart, as GCS answers. The answer's
//     ETag is the object's own, so a HEAD sees the ETag the upload returned.
//
// Copies (x-goog-copy-source) are refused with 501: the sink never copies. Everything else goes
// to fake-gcs-server unchanged.
//
//	fake-gcs -port 4443 -bucket datalake
package main

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

type shim struct {
	inner   http.Handler
	mu      sync.Mutex
	uploads map[string]*upload
}

// upload is one XML multipart upload in progress.
type upload struct {
	bucket, object, contentType string
	parts                       map[int][]byte
}

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

func (s *shim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	case r.Method == http.MethodPost && object != "" && q.Has("uploads"):
		s.initiate(w, r, bucket, object)
	case r.Method == http.MethodPut && object != "" && q.Has("uploadId"):
		s.part(w, r, q.Get("uploadId"), q.Get("partNumber"))
	case r.Method == http.MethodPost && object != "" && q.Has("uploadId"):
		s.complete(w, r, q.Get("uploadId"))
	case r.Method == http.MethodDelete && object != "" && q.Has("uploadId"):
		s.abort(w, q.Get("uploadId"))
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

func (s *shim) put(w http.ResponseWriter, r *http.Request, bucket, object string) {
	etag, generation, ok := s.media(w, r, bucket, object, r.Header.Get("Content-Type"), r.Body, r.Header.Get("x-goog-if-generation-match"))
	if !ok {
		return
	}
	w.Header().Set("ETag", strconv.Quote(etag))
	w.Header().Set("x-goog-generation", generation)
	w.Header().Set("x-goog-metageneration", "1")
	w.WriteHeader(http.StatusOK)
}

// media stores body as bucket/object through fake-gcs-server's media upload (ifGenerationMatch
// when given) and returns the object's ETag and generation; on a refusal it has answered w.
func (s *shim) media(w http.ResponseWriter, r *http.Request, bucket, object, contentType string, body io.Reader, ifGeneration string) (etag, generation string, ok bool) {
	q := url.Values{"uploadType": {"media"}, "name": {object}}
	if ifGeneration != "" {
		q.Set("ifGenerationMatch", ifGeneration)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "/upload/storage/v1/b/"+url.PathEscape(bucket)+"/o?"+q.Encode(), body)
	if err != nil {
		xmlError(w, http.StatusBadRequest, "InvalidArgument", err.Error())
		return "", "", false
	}
	req.Host = r.Host
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	s.inner.ServeHTTP(rec, req)
	switch {
	case rec.Code == http.StatusPreconditionFailed:
		xmlError(w, rec.Code, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
		return "", "", false
	case rec.Code == http.StatusNotFound:
		xmlError(w, rec.Code, "NoSuchBucket", "The specified bucket does not exist.")
		return "", "", false
	case rec.Code != http.StatusOK:
		xmlError(w, rec.Code, "InternalError", strings.TrimSpace(rec.Body.String()))
		return "", "", false
	}
	var created struct {
		Etag       string `json:"etag"`
		Generation string `json:"generation"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return "", "", false
	}
	return created.Etag, created.Generation, true
}

func (s *shim) initiate(w http.ResponseWriter, r *http.Request, bucket, object string) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	uploadID := hex.EncodeToString(id)
	s.mu.Lock()
	s.uploads[uploadID] = &upload{bucket: bucket, object: object, contentType: r.Header.Get("Content-Type"), parts: map[int][]byte{}}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, "%s<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>", xml.Header, escape(bucket), escape(object), uploadID)
}

func (s *shim) part(w http.ResponseWriter, r *http.Request, uploadID, number string) {
	n, err := strconv.Atoi(number)
	if err != nil || n < 1 || n > 10000 {
		xmlError(w, http.StatusBadRequest, "InvalidArgument", "partNumber must be 1 to 10000")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		xmlError(w, http.StatusBadRequest, "IncompleteBody", err.Error())
		return
	}
	s.mu.Lock()
	u, found := s.uploads[uploadID]
	if found {
		u.parts[n] = body
	}
	s.mu.Unlock()
	if !found {
		xmlError(w, http.StatusNotFound, "NoSuchUpload", "The requested upload was not found.")
		return
	}
	w.Header().Set("ETag", partETag(body))
	w.WriteHeader(http.StatusOK)
}

func partETag(body []byte) string {
	sum := md5.Sum(body)
	return strconv.Quote(hex.EncodeToString(sum[:]))
}

func (s *shim) complete(w http.ResponseWriter, r *http.Request, uploadID string) {
	var req struct {
		Parts []struct {
			PartNumber int    `xml:"PartNumber"`
			ETag       string `xml:"ETag"`
		} `xml:"Part"`
	}
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil {
		xmlError(w, http.StatusBadRequest, "MalformedXML", err.Error())
		return
	}
	s.mu.Lock()
	u, found := s.uploads[uploadID]
	s.mu.Unlock()
	if !found {
		xmlError(w, http.StatusNotFound, "NoSuchUpload", "The requested upload was not found.")
		return
	}
	if len(req.Parts) == 0 || !sort.SliceIsSorted(req.Parts, func(i, j int) bool { return req.Parts[i].PartNumber < req.Parts[j].PartNumber }) {
		xmlError(w, http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order.")
		return
	}
	var whole bytes.Buffer
	for _, p := range req.Parts {
		body, ok := u.parts[p.PartNumber]
		if !ok || partETag(body) != strconv.Quote(strings.Trim(p.ETag, `"`)) {
			xmlError(w, http.StatusBadRequest, "InvalidPart", fmt.Sprintf("part %d was not uploaded or its ETag is not %s", p.PartNumber, p.ETag))
			return
		}
		whole.Write(body)
	}
	etag, generation, ok := s.media(w, r, u.bucket, u.object, u.contentType, &whole, "")
	if !ok {
		return
	}
	s.mu.Lock()
	delete(s.uploads, uploadID)
	s.mu.Unlock()
	log.Printf("multipart upload of %s/%s completed from %d parts", u.bucket, u.object, len(req.Parts))
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-goog-generation", generation)
	fmt.Fprintf(w, "%s<CompleteMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><ETag>%s</ETag></CompleteMultipartUploadResult>", xml.Header, escape(u.bucket), escape(u.object), escape(strconv.Quote(etag)))
}

func (s *shim) abort(w http.ResponseWriter, uploadID string) {
	s.mu.Lock()
	_, found := s.uploads[uploadID]
	delete(s.uploads, uploadID)
	s.mu.Unlock()
	if !found {
		xmlError(w, http.StatusNotFound, "NoSuchUpload", "The requested upload was not found.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func escape(text string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(text))
	return b.String()
}

func (s *shim) list(w http.ResponseWriter, r *http.Request, startAfter string) {
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
	log.Fatal(http.ListenAndServe(host, &shim{inner: server.HTTPHandler(), uploads: map[string]*upload{}}))
}
