//! UDP datagrams with a source address of our choosing, through a raw IPv4 socket (the
//! kernel fills in the IP checksum, the length and the identification).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A raw socket that sends whole IPv4 packets (needs `CAP_NET_RAW`).
pub struct Spoofer {
    socket: Socket,
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        let mut pairs = chunk.chunks_exact(2);
        for pair in &mut pairs {
            if let [high, low] = pair {
                sum += u32::from(u16::from_be_bytes([*high, *low]));
            }
        }
        if let [last] = pairs.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let folded = !(sum as u16);
    if folded == 0 { 0xffff } else { folded }
}

/// The IPv4 packet of a UDP datagram from `src` to `dst`.
pub fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let total = udp_len.saturating_add(20);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let sum = checksum(&[&pseudo, &udp]);
    if let Some(field) = udp.get_mut(6..8) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
    ip.extend_from_slice(&udp);
    ip
}

impl Spoofer {
    /// Opens the raw socket.
    pub fn new() -> io::Result<Self> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        Ok(Self { socket })
    }

    /// Sends `payload` as a UDP datagram from `src` to `dst`.
    pub fn send(&self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        let packet = udp_packet(src, dst, payload);
        let to = SockAddr::from(SocketAddrV4::new(*dst.ip(), 0));
        self.socket.send_to(&packet, &to).map(|_| ())
    }
}

/// The `n`th address of `net`/`prefix` (wrapping inside it), never its first or last.
pub fn nth_in(net: Ipv4Addr, prefix: u8, n: u32) -> Ipv4Addr {
    let size = 1u32.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let base = u32::from(net) & !size.wrapping_sub(1);
    if size <= 2 {
        return Ipv4Addr::from(base);
    }
    Ipv4Addr::from(base + 1 + n % (size - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_checksum_verifies() {
        let p = udp_packet(
            SocketAddrV4::new([192, 0, 2, 10].into(), 4877),
            SocketAddrV4::new([198, 51, 100, 20].into(), 4877),
            b"hello",
        );
        assert_eq!(p.len(), 20 + 8 + 5);
        // Summing the pseudo-header and the datagram with its checksum gives 0xffff.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, 13]);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0xffff);
        assert_eq!(
            nth_in([10, 99, 0, 0].into(), 16, 0),
            Ipv4Addr::new(10, 99, 0, 1)
        );
        assert_eq!(
            nth_in([10, 99, 0, 0].into(), 16, 65534),
            Ipv4Addr::new(10, 99, 0, 1)
        );
    }
}
