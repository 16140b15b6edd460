"""Sees, from the outside, when a consumer was given each message and when it acked it.

`tcpdump` records the loopback traffic to and from the broker's port while a consumer
runs. This module reads that pcap file, reassembles each TCP connection of the consumer
(matched by its local port), and walks the AMQP 0-9-1 frames in both directions:

- broker → consumer: `basic.deliver` (delivery tag), then the content header, whose
  `message_id` (`bench-<seq>`) names the message, then the body frames. A message counts
  as delivered at the capture time of the packet that completes its body.
- consumer → broker: `basic.ack` (delivery tag, `multiple` bit), `basic.nack` and
  `basic.reject`. A message counts as acked at the capture time of the packet that
  carries its ack frame.

Nothing here needs the consumer's cooperation, so druid-sync, the Python reference and
the ack-only consumer are measured the same way. Timestamps are the kernel's capture
times (CLOCK_REALTIME, microseconds), comparable with the publisher's `time.time_ns()`.

`AckWatcher` reads only the consumer → broker direction, incrementally, while the run
goes on: it tells the harness when every message has been acked.
"""

import struct

PCAP_HEADER = 24
AMQP_PORT_DEFAULT = 5672
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE

CLASS_BASIC = 60
METHOD_DELIVER = 60
METHOD_ACK = 80
METHOD_REJECT = 90
METHOD_NACK = 120


class _Flow:
    """One direction of one TCP connection, reassembled in sequence order."""

    __slots__ = ("next_seq", "buffer", "broken", "synced", "is_client", "time", "early")

    # Segments held while an earlier one is missing, before the flow is given up.
    MAX_EARLY = 4096

    def __init__(self, is_client: bool):
        self.next_seq = None
        self.buffer = bytearray()
        self.broken = False
        # seq -> payload of segments captured ahead of a gap: with two vCPUs the capture can
        # hold a flow's segments out of order, and the gap fills a few packets later.
        self.early = {}
        self.synced = False
        self.is_client = is_client
        self.time = 0


class PcapReader:
    """Reads a pcap file (Ethernet link type, as tcpdump writes for `lo`) incrementally,
    yielding TCP segments as (time_us, src_port, dst_port, seq, flags, payload).

    Segments that involve no port in `ports` (when given) are skipped before their
    payload is copied, so a capture that also holds other clients' traffic costs little."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.nanos = False
        self.link = None
        self.snap_truncated = 0

    def segments(self, ports=None, broker_port=AMQP_PORT_DEFAULT):
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(self.offset)
            data = f.read()
        pos = 0
        if self.offset == 0:
            if len(data) < PCAP_HEADER:
                return
            magic = struct.unpack_from("<I", data, 0)[0]
            if magic == 0xA1B2C3D4:
                self.nanos = False
            elif magic == 0xA1B23C4D:
                self.nanos = True
            else:
                raise ValueError(f"{self.path}: not a little-endian pcap file")
            self.link = struct.unpack_from("<I", data, 20)[0]
            pos = PCAP_HEADER
        unpack_record = struct.Struct("<IIII").unpack_from
        n = len(data)
        while pos + 16 <= n:
            sec, frac, incl, orig = unpack_record(data, pos)
            if pos + 16 + incl > n:
                break  # a record still being written
            start = pos + 16
            pos = start + incl
            if incl < orig:
                self.snap_truncated += 1
            if self.link == 1:  # Ethernet
                ethertype = (data[start + 12] << 8) | data[start + 13]
                ip = start + 14
            elif self.link == 113:  # Linux cooked capture
                ethertype = (data[start + 14] << 8) | data[start + 15]
                ip = start + 16
            else:
                continue
            if ethertype == 0x0800:
                if data[ip + 9] != 6:
                    continue
                ihl = (data[ip] & 0x0F) * 4
                total = (data[ip + 2] << 8) | data[ip + 3]
                tcp = ip + ihl
                ip_end = ip + total
            elif ethertype == 0x86DD:
                if data[ip + 6] != 6:
                    continue  # extension headers do not occur on loopback TCP
                payload_length = (data[ip + 4] << 8) | data[ip + 5]
                tcp = ip + 40
                ip_end = tcp + payload_length
            else:
                continue
            src_port = (data[tcp] << 8) | data[tcp + 1]
            dst_port = (data[tcp + 2] << 8) | data[tcp + 3]
            if src_port != broker_port and dst_port != broker_port:
                continue
            if ports is not None:
                client_port = dst_port if src_port == broker_port else src_port
                if client_port not in ports:
                    continue
            seq = struct.unpack_from(">I", data, tcp + 4)[0]
            offset = (data[tcp + 12] >> 4) * 4
            flags = data[tcp + 13]
            payload = data[tcp + offset:min(ip_end, pos)]
            time_us = sec * 1_000_000 + (frac // 1000 if self.nanos else frac)
            yield time_us, src_port, dst_port, seq, flags, payload
        self.offset += pos


class AmqpConnections:
    """Reassembles the TCP flows of the consumer's connections and decodes AMQP frames."""

    def __init__(self, broker_port=AMQP_PORT_DEFAULT, decode_deliveries=True):
        self.broker_port = broker_port
        self.decode_deliveries = decode_deliveries
        self.flows = {}
        # Per (client port, channel): delivery tag -> seq, and the message being received.
        self.tag_to_seq = {}
        self.pending_content = {}
        self.pending_deliver = {}
        self.delivered = {}  # (port, channel, tag) -> time_us
        self.acked = {}  # (port, channel, tag) -> time_us
        self.highest_acked = {}  # (port, channel) -> highest tag acked with multiple
        self.acks = 0
        self.acked_by_port = {}  # port -> messages acked
        self.nacks = 0
        self.rejects = 0
        self.broken_flows = 0

    def feed(self, time_us, src_port, dst_port, seq, flags, payload):
        is_client = dst_port == self.broker_port
        client_port = src_port if is_client else dst_port
        if not is_client and not self.decode_deliveries:
            return
        key = (client_port, is_client)
        flow = self.flows.get(key)
        if flags & 0x02:  # SYN: the connection starts inside the capture
            flow = _Flow(is_client)
            flow.next_seq = (seq + 1) & 0xFFFFFFFF
            self.flows[key] = flow
            return
        if flow is None or flow.broken or not payload:
            return
        delta = (seq - flow.next_seq) & 0xFFFFFFFF
        if delta >= 0x80000000:  # a retransmission of bytes already seen
            overlap = (flow.next_seq - seq) & 0xFFFFFFFF
            if overlap >= len(payload):
                return
            payload = payload[overlap:]
        elif delta > 0:  # ahead of a gap: hold it until the gap fills
            flow.early[seq] = payload
            if len(flow.early) > _Flow.MAX_EARLY:  # bytes missing from the capture: give up
                flow.broken = True
                self.broken_flows += 1
            return
        flow.next_seq = (flow.next_seq + len(payload)) & 0xFFFFFFFF
        flow.buffer += payload
        self._take_early(flow)
        flow.time = time_us
        self._decode(flow, client_port)

    @staticmethod
    def _take_early(flow):
        """Appends the held segments that the stream has now reached."""
        while flow.early:
            for seq in list(flow.early):
                behind = (flow.next_seq - seq) & 0xFFFFFFFF
                if behind < 0x80000000:  # starts at or before the next byte wanted
                    payload = flow.early.pop(seq)
                    if behind < len(payload):
                        flow.buffer += payload[behind:]
                        flow.next_seq = (flow.next_seq + len(payload) - behind) & 0xFFFFFFFF
                    break
            else:
                return

    def unfinished_flows(self):
        """Flows still waiting for bytes the capture never had."""
        return sum(1 for flow in self.flows.values() if flow.early and not flow.broken)

    def _decode(self, flow, port):
        buf = flow.buffer
        pos = 0
        if flow.is_client and not flow.synced:
            if len(buf) < 8:
                return
            if bytes(buf[:8]) != PROTOCOL_HEADER:
                flow.broken = True
                return
            pos = 8
        flow.synced = True
        n = len(buf)
        while pos + 7 <= n:
            kind = buf[pos]
            channel = (buf[pos + 1] << 8) | buf[pos + 2]
            size = struct.unpack_from(">I", buf, pos + 3)[0]
            end = pos + 7 + size
            if end + 1 > n:
                break
            if buf[end] != FRAME_END:
                flow.broken = True
                self.broken_flows += 1
                return
            body = pos + 7
            if flow.is_client:
                if kind == 1:
                    self._client_method(buf, body, port, channel, flow.time)
            else:
                self._server_frame(kind, buf, body, size, port, channel, flow.time)
            pos = end + 1
        del buf[:pos]

    def _client_method(self, buf, p, port, channel, time_us):
        class_id, method_id = struct.unpack_from(">HH", buf, p)
        if class_id != CLASS_BASIC:
            return
        if method_id == METHOD_ACK:
            tag = struct.unpack_from(">Q", buf, p + 4)[0]
            multiple = buf[p + 12] & 1
            self.acks += 1
            if multiple:
                low = self.highest_acked.get((port, channel), 0)
                for t in range(low + 1, tag + 1):
                    self._ack(port, channel, t, time_us)
                self.highest_acked[(port, channel)] = max(low, tag)
            else:
                self._ack(port, channel, tag, time_us)
        elif method_id == METHOD_NACK:
            self.nacks += 1
        elif method_id == METHOD_REJECT:
            self.rejects += 1

    def _ack(self, port, channel, tag, time_us):
        key = (port, channel, tag)
        if key not in self.acked:
            self.acked[key] = time_us
            self.acked_by_port[port] = self.acked_by_port.get(port, 0) + 1

    def _server_frame(self, kind, buf, p, size, port, channel, time_us):
        slot = (port, channel)
        if kind == 1:
            class_id, method_id = struct.unpack_from(">HH", buf, p)
            if class_id == CLASS_BASIC and method_id == METHOD_DELIVER:
                q = p + 4
                q += 1 + buf[q]  # consumer tag
                tag = struct.unpack_from(">Q", buf, q)[0]
                self.pending_deliver[slot] = tag
        elif kind == 2:
            tag = self.pending_deliver.get(slot)
            if tag is None:
                return
            body_size = struct.unpack_from(">Q", buf, p + 4)[0]
            seq = _message_seq(buf, p + 12)
            self.tag_to_seq[(port, channel, tag)] = seq
            if body_size == 0:
                self.delivered[(port, channel, tag)] = time_us
                self.pending_deliver.pop(slot, None)
            else:
                self.pending_content[slot] = [tag, body_size]
        elif kind == 3:
            pending = self.pending_content.get(slot)
            if pending is None:
                return
            pending[1] -= size
            if pending[1] <= 0:
                self.delivered[(port, channel, pending[0])] = time_us
                del self.pending_content[slot]
                self.pending_deliver.pop(slot, None)


def _message_seq(buf, p):
    """The `<seq>` of a `bench-<seq>` message_id in a basic content header's properties."""
    flags = struct.unpack_from(">H", buf, p)[0]
    q = p + 2
    if flags & 0x0001:  # a continuation flag word: none of ours has one
        return None
    def shortstr(q):
        length = buf[q]
        return bytes(buf[q + 1:q + 1 + length]), q + 1 + length
    if flags & 0x8000:
        _, q = shortstr(q)  # content type
    if flags & 0x4000:
        _, q = shortstr(q)  # content encoding
    if flags & 0x2000:
        q += 4 + struct.unpack_from(">I", buf, q)[0]  # headers table
    if flags & 0x1000:
        q += 1  # delivery mode
    if flags & 0x0800:
        q += 1  # priority
    if flags & 0x0400:
        _, q = shortstr(q)  # correlation id
    if flags & 0x0200:
        _, q = shortstr(q)  # reply to
    if flags & 0x0100:
        _, q = shortstr(q)  # expiration
    if flags & 0x0080:
        message_id, q = shortstr(q)
        if message_id.startswith(b"bench-"):
            try:
                return int(message_id[6:])
            except ValueError:
                return None
    return None


class AckWatcher:
    """Counts, while the run goes on, the acks each client connection has sent.

    Every connection to the broker that starts inside the capture is decoded (the
    consumer's ports may be learnt only after its connection opened); `acked(ports)`
    then counts those of the consumer."""

    def __init__(self, pcap_path, broker_port=AMQP_PORT_DEFAULT):
        self.reader = PcapReader(pcap_path)
        self.connections = AmqpConnections(broker_port, decode_deliveries=False)
        self.broker_port = broker_port

    def poll(self):
        """Decodes what the capture gained since the last call."""
        for segment in self.reader.segments(broker_port=self.broker_port):
            self.connections.feed(*segment)

    def acked(self, ports):
        return sum(self.connections.acked_by_port.get(port, 0) for port in ports)


def analyse(pcap_path, ports, broker_port=AMQP_PORT_DEFAULT):
    """Decodes the whole capture; returns the AmqpConnections with deliveries and acks."""
    reader = PcapReader(pcap_path)
    connections = AmqpConnections(broker_port, decode_deliveries=True)
    for segment in reader.segments(ports=ports, broker_port=broker_port):
        connections.feed(*segment)
    connections.snap_truncated = reader.snap_truncated
    connections.broken_flows += connections.unfinished_flows()
    return connections


def consumer_ports(pid, broker_port=AMQP_PORT_DEFAULT):
    """The local ports of `pid`'s TCP connections to the broker's port (from /proc)."""
    import os

    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, remote, inode = fields[1], fields[2], fields[9]
                    if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == broker_port:
                        ports.add(int(local.rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports
