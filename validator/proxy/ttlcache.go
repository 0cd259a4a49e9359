package proxy

import (
	"container/list"
	"sync"
	"time"
)

// ttlLRU is a bounded cache whose entries expire: the least recently used
// entry goes first when it is full, and an expired entry is never returned.
// It is safe for concurrent use. The lookup cache and the token cache are
// both one.
type ttlLRU[K comparable, V any] struct {
	size int
	now  func() time.Time

	mu    sync.Mutex
	lru   *list.List // of *ttlItem[K, V], most recent first
	items map[K]*list.Element
}

type ttlItem[K comparable, V any] struct {
	key     K
	expires time.Time
	val     V
}

func newTTLLRU[K comparable, V any](size int, now func() time.Time) *ttlLRU[K, V] {
	if size <= 0 {
		size = 10000
	}
	return &ttlLRU[K, V]{size: size, now: now, lru: list.New(), items: map[K]*list.Element{}}
}

// get returns the live value of key.
func (c *ttlLRU[K, V]) get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.items[key]
	if !ok {
		return zero, false
	}
	it := el.Value.(*ttlItem[K, V])
	if !c.now().Before(it.expires) {
		c.lru.Remove(el)
		delete(c.items, key)
		return zero, false
	}
	c.lru.MoveToFront(el)
	return it.val, true
}

// put stores val until expires, evicting the least recently used entries
// beyond the size bound.
func (c *ttlLRU[K, V]) put(key K, val V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it := &ttlItem[K, V]{key: key, expires: expires, val: val}
	if el, ok := c.items[key]; ok {
		el.Value = it
		c.lru.MoveToFront(el)
		return
	}
	c.items[key] = c.lru.PushFront(it)
	for c.lru.Len() > c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*ttlItem[K, V]).key)
	}
}

// len is the number of entries, live or expired.
func (c *ttlLRU[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
