// gocrypt prints the gossip-encryption test vectors pinned in tests/unit/test_gossip_crypt.c.
//
// Part 1 seals fixed plaintexts under fixed keys and nonces with Go's crypto/aes and
// crypto/cipher GCM in memberlist's layout (security.go): [version][nonce][ciphertext+tag],
// version 0 with PKCS#7 padding, version 1 without, streams with the 5-byte header as
// additional data. Part 2 runs the real hashicorp/memberlist (Debian's package) with a
// SecretKey on its mock transport and prints what it puts on the wire: a packet (SendToAddress)
// and a stream (SendReliable); those carry random nonces, so the C test decrypts them.
//
// Build offline:  GO111MODULE=off GOPATH=/usr/share/gocode go run main.go
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"time"

	"github.com/hashicorp/memberlist"
)

func seal(vsn byte, key, nonce, msg, aad []byte) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		log.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		log.Fatal(err)
	}
	plain := append([]byte{}, msg...)
	if vsn == 0 {
		pad := 16 - len(plain)%16
		for i := 0; i < pad; i++ {
			plain = append(plain, byte(pad))
		}
	}
	out := []byte{vsn}
	out = append(out, nonce...)
	return append(out, gcm.Seal(nil, nonce, plain, aad)...)
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func main() {
	nonce := seq(12, 0xa0)
	msg := []byte("concord speaks memberlist")
	fmt.Printf("v1_k16 %x\n", seal(1, seq(16, 1), nonce, msg, nil))
	fmt.Printf("v0_k16 %x\n", seal(0, seq(16, 1), nonce, msg, nil))
	fmt.Printf("v1_k24 %x\n", seal(1, seq(24, 1), nonce, msg, nil))
	fmt.Printf("v1_k32 %x\n", seal(1, seq(32, 1), nonce, msg, nil))
	fmt.Printf("v0_k32_block %x\n", seal(0, seq(32, 1), nonce, seq(16, 0x30), nil))
	fmt.Printf("v1_empty %x\n", seal(1, seq(16, 1), nonce, nil, nil))
	// A stream: [10][length][encrypted], the header authenticated.
	hdr := make([]byte, 5)
	hdr[0] = 10
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(msg)+29))
	aadBody := seal(1, seq(32, 1), nonce, msg, hdr)
	fmt.Printf("stream_k32 %x%x\n", hdr, aadBody)

	// Part 2: memberlist itself.
	key := seq(32, 0x40)
	net := &memberlist.MockNetwork{}
	conf := memberlist.DefaultLANConfig()
	conf.Name = "go"
	conf.SecretKey = key
	conf.Transport = net.NewTransport("go")
	conf.LogOutput = ioutil.Discard
	m, err := memberlist.Create(conf)
	if err != nil {
		log.Fatal(err)
	}
	peer := net.NewTransport("peer")
	ip, port, err := peer.FinalAdvertiseAddr("", 0)
	if err != nil {
		log.Fatal(err)
	}
	addr := memberlist.Address{Addr: fmt.Sprintf("%s:%d", ip, port), Name: "peer"}
	// The mock transport hands packets over unbuffered: send from another goroutine.
	go func() {
		if err := m.SendToAddress(addr, []byte("hello from memberlist")); err != nil {
			log.Fatal(err)
		}
	}()
	select {
	case p := <-peer.PacketCh():
		fmt.Printf("ml_packet %x\n", p.Buf)
	case <-time.After(5 * time.Second):
		log.Fatal("no packet")
	}
	node := &memberlist.Node{Name: "peer", Addr: ip, Port: uint16(port)}
	go func() {
		if err := m.SendReliable(node, []byte("hello over tcp")); err != nil {
			log.Fatal(err)
		}
	}()
	select {
	case c := <-peer.StreamCh():
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		fmt.Printf("ml_stream %x\n", b)
	case <-time.After(5 * time.Second):
		log.Fatal("no stream")
	}
	m.Shutdown()
}
