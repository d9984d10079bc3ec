package live

// ring keeps the latest n values pushed: a fixed-size buffer allocated once,
// where each push beyond n overwrites the oldest. It is what bounds the
// page's memory, whatever the traffic.
type ring[T any] struct {
	buf  []T
	next int  // where the next push goes
	full bool // every slot holds a value
}

func newRing[T any](n int) *ring[T] {
	return &ring[T]{buf: make([]T, max(n, 1))}
}

func (r *ring[T]) push(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

func (r *ring[T]) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

func (r *ring[T]) cap() int { return len(r.buf) }

// all returns a copy of the values, oldest first.
func (r *ring[T]) all() []T {
	if !r.full {
		return append([]T(nil), r.buf[:r.next]...)
	}
	out := make([]T, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}

// last returns the newest value; ok is false when the ring is empty.
func (r *ring[T]) last() (v T, ok bool) {
	if r.len() == 0 {
		return v, false
	}
	return r.buf[(r.next-1+len(r.buf))%len(r.buf)], true
}
