//! How much room a connection's read buffer gets before each read.
//!
//! A publisher sending many small packets should need few syscalls: a read that fills all the
//! room it was given doubles the room for the next one, up to [`MAX`]. A connection that
//! catches up (a read leaves room unused and the buffer drains) halves it again, and gives a
//! large buffer back, so an idle connection keeps only [`MIN`] bytes.
//!
//! The codec copies small frames out of the buffer (see `MqttCodec::decode`), so nothing a
//! connection holds on to pins a read buffer, and the buffer is reused in place.

use bytes::BytesMut;

/// Room an idle or slow connection reads into.
pub const MIN: usize = 256;
/// Room a connection that keeps filling its buffer grows to.
pub const MAX: usize = 64 * 1024;

/// Read-room policy of one connection.
#[derive(Debug)]
pub struct ReadRoom {
    want: usize,
}

impl Default for ReadRoom {
    fn default() -> Self {
        ReadRoom { want: MIN }
    }
}

impl ReadRoom {
    /// Makes sure `buf` has room for the next read; returns the room it has.
    pub fn prepare(&self, buf: &mut BytesMut) -> usize {
        if buf.capacity() - buf.len() < self.want {
            buf.reserve(self.want);
        }
        buf.capacity() - buf.len()
    }

    /// Adjusts after a read of `n` bytes into `room` (what [`prepare`](Self::prepare)
    /// returned) once the packets in it were decoded.
    pub fn after_read(&mut self, n: usize, room: usize, buf: &mut BytesMut) {
        if n >= room {
            self.want = (self.want * 2).min(MAX);
        } else if buf.is_empty() {
            self.want = (self.want / 2).max(MIN);
            if buf.capacity() > 2 * self.want {
                *buf = BytesMut::new();
            }
        }
    }

    /// The room the next read will get.
    #[cfg(test)]
    pub fn want(&self) -> usize {
        self.want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_reads_grow_the_room_up_to_the_cap() {
        let mut room = ReadRoom::default();
        let mut buf = BytesMut::new();
        let mut sizes = Vec::new();
        for _ in 0..12 {
            let r = room.prepare(&mut buf);
            assert!(r >= room.want());
            // The read fills everything; the codec then consumes it all.
            room.after_read(r, r, &mut buf);
            sizes.push(room.want());
        }
        assert_eq!(sizes[0], 2 * MIN);
        assert_eq!(*sizes.last().unwrap(), MAX);
        assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_drained_connection_shrinks_and_gives_the_big_buffer_back() {
        let mut room = ReadRoom::default();
        let mut buf = BytesMut::new();
        for _ in 0..20 {
            let r = room.prepare(&mut buf);
            room.after_read(r, r, &mut buf);
        }
        assert!(buf.capacity() >= MAX / 2);
        // Quiet from now on: two-byte reads (PINGREQ) that leave the buffer empty.
        for _ in 0..20 {
            let r = room.prepare(&mut buf);
            room.after_read(2, r, &mut buf);
        }
        assert_eq!(room.want(), MIN);
        assert!(buf.capacity() < 4 * MIN, "kept {} bytes", buf.capacity());
    }

    #[test]
    fn a_partial_packet_keeps_the_buffer_and_the_room() {
        let mut room = ReadRoom::default();
        let mut buf = BytesMut::new();
        let r = room.prepare(&mut buf);
        buf.extend_from_slice(&[0x30, 0x7f, 0x00]);
        room.after_read(3, r, &mut buf);
        assert_eq!(room.want(), MIN);
        assert_eq!(&buf[..], &[0x30, 0x7f, 0x00]);
    }
}
