//! Transports (std): device address strings (`tcp://`, `serial:`, `exec:`),
//! [`Link`], a byte pipe with read timeouts that the station client talks
//! over, and [`serve_io`]/[`serve_stdio`] to run an agent over any stream.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::agent::Agent;
use crate::device::Device;
use crate::error::{AddressError, LinkError};

/// Serial speed used when a `serial:` address names none.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Where a device is reached.
///
/// | form | meaning |
/// |---|---|
/// | `tcp://HOST:PORT` | a TCP connection |
/// | `serial:/dev/ttyUSB0` or `serial:/dev/ttyUSB0@921600` | a serial port (raw 8N1, default 115200 baud) |
/// | `exec:CMD` | `sh -c CMD`, talking over its stdin/stdout (e.g. `exec:ssh dev42 idmint-agent`) |
///
/// ```
/// use idmint_agent::DeviceAddress;
///
/// let a: DeviceAddress = "serial:/dev/ttyUSB0@921600".parse().unwrap();
/// assert_eq!(a, DeviceAddress::Serial { path: "/dev/ttyUSB0".into(), baud: 921600 });
/// assert_eq!(a.to_string(), "serial:/dev/ttyUSB0@921600");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceAddress {
    /// `tcp://HOST:PORT`
    Tcp(String),
    /// `serial:PATH[@BAUD]`
    Serial {
        /// The tty device.
        path: PathBuf,
        /// Bits per second.
        baud: u32,
    },
    /// `exec:CMD`
    Exec(String),
}

impl FromStr for DeviceAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            let ok = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(AddressError::BadTcp(s.to_owned()));
            }
            Ok(Self::Tcp(rest.to_owned()))
        } else if let Some(rest) = s.strip_prefix("serial:") {
            let (path, baud) = match rest.rsplit_once('@') {
                Some((path, baud)) => (
                    path,
                    baud.parse::<u32>()
                        .map_err(|_| AddressError::BadSerial(s.to_owned()))?,
                ),
                None => (rest, DEFAULT_BAUD),
            };
            if path.is_empty() || baud == 0 {
                return Err(AddressError::BadSerial(s.to_owned()));
            }
            Ok(Self::Serial {
                path: PathBuf::from(path),
                baud,
            })
        } else if let Some(cmd) = s.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err(AddressError::EmptyCommand);
            }
            Ok(Self::Exec(cmd.to_owned()))
        } else {
            Err(AddressError::UnknownScheme(s.to_owned()))
        }
    }
}

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(hp) => write!(f, "tcp://{hp}"),
            Self::Serial { path, baud } if *baud == DEFAULT_BAUD => {
                write!(f, "serial:{}", path.display())
            }
            Self::Serial { path, baud } => write!(f, "serial:{}@{baud}", path.display()),
            Self::Exec(cmd) => write!(f, "exec:{cmd}"),
        }
    }
}

/// A byte pipe to a device whose reads wait at most a given time.
pub trait Transport: Send {
    /// Write all of `bytes`.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Read some bytes, waiting at most `timeout`. `Ok(0)` means the peer
    /// closed the link; an error of kind [`io::ErrorKind::TimedOut`] means
    /// nothing arrived in time.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
}

/// An open link to a device.
pub struct Link {
    transport: Box<dyn Transport>,
    address: String,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Open a link to `address`; a TCP connect waits at most `connect_timeout`.
    pub fn open(address: &DeviceAddress, connect_timeout: Duration) -> Result<Self, LinkError> {
        let name = address.to_string();
        let open_err = |source| LinkError::Open {
            address: name.clone(),
            source,
        };
        let transport: Box<dyn Transport> = match address {
            DeviceAddress::Tcp(hp) => Box::new(open_tcp(hp, connect_timeout).map_err(open_err)?),
            DeviceAddress::Serial { path, baud } => Box::new(SerialPort::open(path, *baud)?),
            DeviceAddress::Exec(cmd) => Box::new(ExecTransport::spawn(cmd).map_err(open_err)?),
        };
        Ok(Self {
            transport,
            address: name,
        })
    }

    /// Wrap any transport (e.g. an in-memory pipe in tests).
    pub fn from_transport(transport: Box<dyn Transport>, address: impl Into<String>) -> Self {
        Self {
            transport,
            address: address.into(),
        }
    }

    /// The address this link was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Write all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.transport.send(bytes)
    }

    /// Read some bytes within `timeout`; see [`Transport::recv`].
    pub fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.transport.recv(buf, timeout)
    }
}

fn open_tcp(host_port: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address resolved");
    for addr in host_port.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "read timed out")
}

impl Transport for TcpStream {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)?;
        self.flush()
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        // A zero timeout means "block forever" to std; never ask for that.
        self.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(timed_out())
            }
            other => other,
        }
    }
}

/// A serial port (or pty slave) in raw 8N1 mode.
struct SerialPort {
    file: File,
}

impl SerialPort {
    fn open(path: &std::path::Path, baud: u32) -> Result<Self, LinkError> {
        use nix::sys::termios::{cfmakeraw, cfsetspeed, tcflush, tcgetattr, tcsetattr};
        use nix::sys::termios::{FlushArg, SetArg};

        let speed = baud_rate(baud).ok_or(LinkError::BadBaud(baud))?;
        let open_err = |source| LinkError::Open {
            address: format!("serial:{}", path.display()),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
            .open(path)
            .map_err(open_err)?;
        let mut tio = tcgetattr(file.as_fd()).map_err(|e| open_err(e.into()))?;
        cfmakeraw(&mut tio);
        cfsetspeed(&mut tio, speed).map_err(|e| open_err(e.into()))?;
        tcsetattr(file.as_fd(), SetArg::TCSANOW, &tio).map_err(|e| open_err(e.into()))?;
        // Drop whatever the device printed before we opened the port.
        let _ = tcflush(file.as_fd(), FlushArg::TCIFLUSH);
        Ok(Self { file })
    }
}

fn baud_rate(baud: u32) -> Option<nix::sys::termios::BaudRate> {
    use nix::sys::termios::BaudRate as B;
    Some(match baud {
        9600 => B::B9600,
        19_200 => B::B19200,
        38_400 => B::B38400,
        57_600 => B::B57600,
        115_200 => B::B115200,
        230_400 => B::B230400,
        460_800 => B::B460800,
        921_600 => B::B921600,
        1_000_000 => B::B1000000,
        2_000_000 => B::B2000000,
        _ => return None,
    })
}

impl Transport for SerialPort {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.flush()
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = u16::try_from(timeout.as_millis())
            .unwrap_or(u16::MAX)
            .max(1);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ms)).map_err(io::Error::from)?;
        if ready == 0 {
            return Err(timed_out());
        }
        self.file.read(buf)
    }
}

/// A child process `sh -c CMD`; its stdout is read by a thread so reads can
/// time out.
struct ExecTransport {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    closed: bool,
}

impl ExecTransport {
    fn spawn(cmd: &str) -> io::Result<Self> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child has no stdout"))?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.send(Ok(Vec::new()));
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Ok(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            rx,
            pending: Vec::new(),
            closed: false,
        })
    }
}

impl Transport for ExecTransport {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if self.pending.is_empty() {
            if self.closed {
                return Ok(0);
            }
            match self.rx.recv_timeout(timeout) {
                Ok(Ok(chunk)) if chunk.is_empty() => {
                    self.closed = true;
                    return Ok(0);
                }
                Ok(Ok(chunk)) => self.pending = chunk,
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(timed_out()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl Drop for ExecTransport {
    fn drop(&mut self) {
        // Closing stdin lets a well-behaved agent exit; then make sure.
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(50));
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Run `agent` over a byte stream until the reader reaches end of file:
/// every complete request frame read gets one response frame written.
pub fn serve_io<D: Device, R: Read, W: Write>(
    agent: &mut Agent<D>,
    mut reader: R,
    mut writer: W,
) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for frame in agent.receive(&buf[..n]) {
            writer.write_all(&frame)?;
            writer.flush()?;
        }
    }
}

/// Run an agent for `device` over this process's stdin and stdout, so a
/// station can reach it with `exec:ssh HOST idmint-agent`. Nothing else may
/// write to stdout meanwhile; log to stderr.
pub fn serve_stdio<D: Device>(device: D) -> io::Result<()> {
    let mut agent = Agent::new(device);
    serve_io(&mut agent, io::stdin().lock(), io::stdout().lock())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_addresses() {
        assert_eq!(
            "tcp://127.0.0.1:7000".parse::<DeviceAddress>(),
            Ok(DeviceAddress::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "tcp://[::1]:7000".parse::<DeviceAddress>(),
            Ok(DeviceAddress::Tcp("[::1]:7000".into()))
        );
        assert!(matches!(
            "tcp://host".parse::<DeviceAddress>(),
            Err(AddressError::BadTcp(_))
        ));
        assert!(matches!(
            "tcp://host:99999".parse::<DeviceAddress>(),
            Err(AddressError::BadTcp(_))
        ));
        assert_eq!(
            "serial:/dev/ttyUSB0".parse::<DeviceAddress>(),
            Ok(DeviceAddress::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: DEFAULT_BAUD
            })
        );
        assert!(matches!(
            "serial:/dev/ttyUSB0@fast".parse::<DeviceAddress>(),
            Err(AddressError::BadSerial(_))
        ));
        assert!(matches!(
            "serial:".parse::<DeviceAddress>(),
            Err(AddressError::BadSerial(_))
        ));
        assert_eq!(
            "exec:ssh dev idmint-agent".parse::<DeviceAddress>(),
            Ok(DeviceAddress::Exec("ssh dev idmint-agent".into()))
        );
        assert_eq!(
            "exec: ".parse::<DeviceAddress>(),
            Err(AddressError::EmptyCommand)
        );
        assert!(matches!(
            "/dev/ttyUSB0".parse::<DeviceAddress>(),
            Err(AddressError::UnknownScheme(_))
        ));
        for s in [
            "tcp://h:1",
            "serial:/dev/x",
            "serial:/dev/x@9600",
            "exec:cat",
        ] {
            assert_eq!(s.parse::<DeviceAddress>().unwrap().to_string(), s);
        }
    }
}
