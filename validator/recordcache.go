package validator

import "sync"

// recordCacheGeneration bounds the record cache: it holds at most two
// generations of this many records (the current one and the one before,
// whose records move back to the current one when used), so the records of
// images deleted long ago leave it, and its memory is bounded whatever the
// catalogue's history (about 2 KiB a record, mostly the derived
// properties and the chain).
var recordCacheGeneration = 20000

// recordCache maps a record's key (recordKey) to its verdict, bounded by
// two generations: an approximate LRU at the cost of a map swap.
type recordCache struct {
	mu        sync.Mutex
	cur, prev map[string]*recordResult
}

func (c *recordCache) get(key string) (*recordResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rr, ok := c.cur[key]; ok {
		return rr, true
	}
	if rr, ok := c.prev[key]; ok {
		c.putLocked(key, rr)
		return rr, true
	}
	return nil, false
}

func (c *recordCache) put(key string, rr *recordResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(key, rr)
}

func (c *recordCache) putLocked(key string, rr *recordResult) {
	if c.cur == nil {
		c.cur = map[string]*recordResult{}
	}
	if len(c.cur) >= recordCacheGeneration {
		c.prev, c.cur = c.cur, map[string]*recordResult{}
	}
	c.cur[key] = rr
}

// len is the number of records held, for tests.
func (c *recordCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.prev)
}
