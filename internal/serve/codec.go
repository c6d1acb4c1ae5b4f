package serve

import (
	"fmt"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/keygate/keygate/authz"
)

// vtMessage is a message with vtprotobuf's generated marshaller, which
// go-control-plane compiles in under the vtprotobuf build tag (make build
// sets it): about three times faster than reflection for a CheckResponse.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

// codec is gRPC's proto codec with the generated marshaller where there is
// one.
//
// Once a CheckResponse is marshalled, the codec hands it back to authz for
// reuse: the server keeps no reference to a reply it has encoded as long
// as no stats handler and no request tracing are installed, and keygate
// installs neither.
//
// A check is read with authz's Decoder into a pooled authz.Request, which
// keeps only what the decision uses (see checkService). Every other
// message (health, reflection, ext_proc's ProcessingRequest and
// ProcessingResponse) is read by gRPC's proto codec, and written by it or
// by its generated marshaller.
type codec struct {
	encoding.CodecV2
	release bool
	decoder *authz.Decoder
	failed  func() // told of each request that does not decode
}

func newCodec(d *authz.Decoder, failed func()) codec {
	if failed == nil {
		failed = func() {}
	}
	return codec{CodecV2: encoding.GetCodecV2("proto"), release: !grpc.EnableTracing, decoder: d, failed: failed}
}

// Unmarshal implements encoding.CodecV2.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.unmarshal(data, v)
	if err != nil {
		c.failed()
	}
	return err
}

func (c codec) unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*authz.Request)
	if !ok || c.decoder == nil {
		return c.CodecV2.Unmarshal(data, v)
	}
	if len(data) == 1 { // the usual case: no copy
		return c.decoder.DecodeRequest(data[0].ReadOnlyData(), req)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return c.decoder.DecodeRequest(buf.ReadOnlyData(), req)
}

// Marshal implements encoding.CodecV2.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	out, err := c.marshal(v)
	if r, ok := v.(*authv3.CheckResponse); ok && c.release {
		authz.Release(r)
	}
	return out, err
}

func (c codec) marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*authv3.CheckResponse); ok {
		buf := smallBuffers.Get(0)
		if b, ok := authz.AppendAllow((*buf)[:0], r); ok {
			if cap(b) != smallBufferCap { // grew past the pool's buffers
				smallBuffers.Put(buf)
				return mem.BufferSlice{mem.SliceBuffer(b)}, nil
			}
			*buf = b
			return mem.BufferSlice{mem.NewBuffer(buf, smallBuffers)}, nil
		}
		smallBuffers.Put(buf)
	}
	m, ok := v.(vtMessage)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	size := m.SizeVT()
	var pool mem.BufferPool = mem.DefaultBufferPool()
	if size <= smallBufferCap {
		pool = smallBuffers
	}
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// smallBufferCap is the capacity of the buffers smallBuffers hands out:
// above gRPC's pooling threshold, so that gRPC returns them once written.
const smallBufferCap = 2 << 10

// smallBuffers recycles marshalled responses of up to smallBufferCap
// bytes, allows among them. gRPC's own pool allocates buffers this small
// afresh, and clears the pooled larger ones; a marshaller writes every
// byte of its buffer, so these are neither.
var smallBuffers mem.BufferPool = &bufferPool{}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get(n int) *[]byte {
	b, ok := p.pool.Get().(*[]byte)
	if !ok {
		s := make([]byte, smallBufferCap)
		b = &s
	}
	*b = (*b)[:n]
	return b
}

func (p *bufferPool) Put(b *[]byte) { p.pool.Put(b) }
