package readstore

// orderCacheSize bounds each of the two generations of an orderCache.
const orderCacheSize = 16_384

// orderCache holds the orders as the last commits left them, so a batch
// finds the orders it continues without reading them. It is owned by
// Apply (under applyMu), filled only after a commit and emptied when an
// Apply fails. Cached orders are never modified: project copies.
type orderCache struct {
	cur, prev map[string]*Order // prev: the generation before cur filled up
}

func (c *orderCache) get(id string) *Order {
	if o, ok := c.cur[id]; ok {
		return o
	}
	if o, ok := c.prev[id]; ok {
		c.put(o)
		return o
	}
	return nil
}

func (c *orderCache) put(o *Order) {
	if c.cur == nil || len(c.cur) >= orderCacheSize {
		c.prev, c.cur = c.cur, make(map[string]*Order, orderCacheSize)
	}
	c.cur[o.ID] = o
}

func (c *orderCache) reset() { c.cur, c.prev = nil, nil }
