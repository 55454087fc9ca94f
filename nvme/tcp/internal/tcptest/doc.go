// Package tcptest is a small NVMe/TCP target for host tests: an in-memory
// controller (registers, Identify, one namespace in RAM, a discovery log)
// behind the PDU codec of package nvme/tcp/pdu, served over any net.Conn
// (net.Pipe, or a listener on 127.0.0.1). It answers ICReq, Fabrics
// Connect, Property Get/Set, Identify, Get Log Page (discovery), Keep
// Alive, Set/Get Features (number of queues), and Read, Write and Flush:
// reads in C2HData PDUs (optionally completed by the SUCCESS flag), writes
// in-capsule or through R2T and H2CData.
//
// It is strict: everything the host sends goes through the pdu Reader and
// the Check functions, a protocol error is answered with a C2HTermReq and
// the connection closed, and every such error is recorded (Errors) so that
// a test can assert that a well-behaved host made none. It is a test fake,
// not the target of issue 18: a goroutine per connection, a mutex around
// the controller, commands executed one at a time.
//
// Everything here may be called from any goroutine.
package tcptest
