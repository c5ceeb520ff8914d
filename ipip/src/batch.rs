//! Batched datagram I/O on the raw socket: `sendmmsg(2)` and `recvmmsg(2)`
//! move a whole batch of tunnelled packets per system call (the per-packet
//! system calls are what a userspace tunnel spends its time on).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

fn sockaddr(dst: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(dst.octets()) };
    sa
}

/// Sends each `(packet, destination)`; returns how many the kernel took
/// (fewer when the socket buffer filled: `WouldBlock` if none).
pub fn send(fd: RawFd, packets: &[(&[u8], Ipv4Addr)]) -> io::Result<usize> {
    if packets.is_empty() {
        return Ok(0);
    }
    let mut addrs: Vec<libc::sockaddr_in> = packets.iter().map(|(_, d)| sockaddr(*d)).collect();
    let mut iovs: Vec<libc::iovec> = packets
        .iter()
        .map(|(p, _)| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(addrs.iter_mut())
        .map(|(iov, addr)| {
            // SAFETY: mmsghdr is plain data; all-zero is valid; the pointers set below outlive the call.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs, their iovecs and addresses are valid for the length given, and live through the call.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Receives up to `bufs.len()` datagrams, each into `bufs[i][head..]`;
/// their lengths go to `lens`. `WouldBlock` when nothing is queued.
pub fn recv(fd: RawFd, bufs: &mut [Vec<u8>], head: usize, lens: &mut [usize]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| {
            let room = &mut b[head..];
            libc::iovec { iov_base: room.as_mut_ptr().cast(), iov_len: room.len() }
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: as in `send`.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs and their iovecs point into `bufs`, valid and writable for the lengths given.
    let n = unsafe {
        libc::recvmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    for (len, m) in lens.iter_mut().zip(&msgs).take(n as usize) {
        *len = m.msg_len as usize;
    }
    Ok(n as usize)
}
