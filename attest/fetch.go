package attest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// fetchTimeout bounds each online fetch, like Contrast's issuer-side
// collateral fetches (20 s).
const fetchTimeout = 20 * time.Second

// maxFetchSize bounds a fetched certificate, CRL or collateral document.
const maxFetchSize = 10 << 20

// Cache keeps documents fetched from AMD KDS and Intel PCS (certificates,
// CRLs, TCB info) so repeated online checks do not fetch them again; AMD in
// particular rate-limits its KDS. It is safe for concurrent use.
type Cache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	header  http.Header
	body    []byte
	expires time.Time
}

// NewCache returns a cache whose entries live for ttl (a CRL or TCB info
// may change, so keep it to hours).
func NewCache(ttl time.Duration) *Cache {
	return &Cache{ttl: ttl, entries: map[string]cacheEntry{}}
}

func (c *Cache) get(url string, now time.Time) (cacheEntry, bool) {
	if c == nil {
		return cacheEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[url]
	if !ok || now.After(e.expires) {
		return cacheEntry{}, false
	}
	return e, true
}

func (c *Cache) put(url string, header http.Header, body []byte, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[url] = cacheEntry{header: header, body: body, expires: now.Add(c.ttl)}
}

// fetcher serves go-sev-guest's and go-tdx-guest's getters for one check,
// bound to its context.
type fetcher struct {
	ctx    context.Context
	client *http.Client
	cache  *Cache
}

func newFetcher(ctx context.Context, opts Options) *fetcher {
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	return &fetcher{ctx: ctx, client: client, cache: opts.Cache}
}

func (f *fetcher) fetch(ctx context.Context, url string) (http.Header, []byte, error) {
	if e, ok := f.cache.get(url, time.Now()); ok {
		return e.header, e.body, nil
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if len(body) > maxFetchSize {
		return nil, nil, fmt.Errorf("%s: response larger than %d bytes", url, maxFetchSize)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: HTTP status %s", url, resp.Status)
	}
	f.cache.put(url, resp.Header, body, time.Now())
	return resp.Header, body, nil
}

// sevGetter is go-sev-guest's trust.HTTPSGetter (and ContextHTTPSGetter).
type sevGetter struct{ f *fetcher }

func (g sevGetter) Get(url string) ([]byte, error) {
	return g.GetContext(g.f.ctx, url)
}

func (g sevGetter) GetContext(ctx context.Context, url string) ([]byte, error) {
	_, body, err := g.f.fetch(ctx, url)
	return body, err
}

// tdxGetter is go-tdx-guest's trust.HTTPSGetter, which also needs the
// response headers (they carry the collateral's issuer chains).
type tdxGetter struct{ f *fetcher }

func (g tdxGetter) Get(url string) (map[string][]string, []byte, error) {
	h, body, err := g.f.fetch(g.f.ctx, url)
	return h, body, err
}
