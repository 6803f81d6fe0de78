// TLS listener (--ssl_cert / --ssl_key): wss:// and https:// on the main port through the real
// binary, connections that fail the handshake, and the startup errors for bad certificates.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "test_support.h"
#include "tests/integration/tls/tls_util.h"

namespace cable::ittls {
namespace {

using namespace std::chrono_literals;
using cable::test::HttpRequest;
using cable::test::HttpsRequest;
using cable::test::ServerProcess;
using cable::test::WsClient;
using cable::test::WsFrame;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(certs_.ok()) << certs_.error(); }
  // A clean exit (0) on SIGTERM, and no sanitizer report in its log (ASan/UBSan builds).
  void TearDown() override {
    if (!server_.running()) return;
    EXPECT_EQ(server_.Stop(), 0) << server_.Log();
    std::string log = server_.Log();
    EXPECT_EQ(log.find("Sanitizer"), std::string::npos) << log;
    EXPECT_EQ(log.find("runtime error"), std::string::npos) << log;
  }

  void StartServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = PublicArgs();
    args.insert(args.end(), {"--ssl_cert", certs_.cert(), "--ssl_key", certs_.key()});
    args.insert(args.end(), extra.begin(), extra.end());
    server_.set_tls(true);
    ASSERT_TRUE(server_.Start(args)) << server_.Log();
  }

  // A wss:// client subscribed to `stream` (welcome and confirmation consumed).
  std::unique_ptr<WsClient> Subscriber(const std::string& stream) {
    auto c = std::make_unique<WsClient>();
    c->set_tls(true);
    EXPECT_EQ(c->Connect(server_.port()), 101);
    EXPECT_TRUE(c->WaitFor("welcome").has_value());
    EXPECT_TRUE(c->SendText(SubscribeCommand(PubsubId(stream))));
    EXPECT_TRUE(c->WaitFor("confirm_subscription").has_value());
    return c;
  }

  int Broadcast(const std::string& body) {
    return HttpsRequest(server_.port(), "POST", "/_broadcast",
                        {{"Authorization", std::string("Bearer ") + kBroadcastKey}}, body)
        .status;
  }

  long long TlsErrors() {
    auto r = HttpsRequest(server_.port(), "GET", "/metrics");
    EXPECT_EQ(r.status, 200);
    return SumSeries(r.body, "ringcable_worker_tls_errors_total");
  }

  CertDir certs_;
  ServerProcess server_;
};

TEST_F(TlsTest, WssSubscribeAndHttpsBroadcast) {
  StartServer();
  EXPECT_EQ(HttpsRequest(server_.port(), "GET", "/health").status, 200);
  auto client = Subscriber("tls_chat");
  ASSERT_EQ(Broadcast(Publication("tls_chat", "{\"text\":\"hello over tls\"}")), 201);
  auto frame = client->NextMessage(10s);
  EXPECT_EQ(frame.opcode, 1);
  EXPECT_EQ(frame.payload, Delivered(PubsubId("tls_chat"), "{\"text\":\"hello over tls\"}"));
  EXPECT_EQ(TlsErrors(), 0);
}

// The subject line of the certificate the server presents to a new connection (openssl s_client).
std::string ServedSubject(int port) {
  auto r =
      cable::test::RunCommand({"openssl", "s_client", "-brief", "-connect",
                               "127.0.0.1:" + std::to_string(port), "-servername", "localhost"},
                              30s);
  auto at = r.output.find("Peer certificate:");
  return at == std::string::npos ? r.output : r.output.substr(at, r.output.find('\n', at) - at);
}

bool LogShows(ServerProcess& server, const std::string& text, size_t times) {
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log = server.Log();
    size_t n = 0;
    for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    if (n >= times) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// SIGHUP reloads --ssl_cert/--ssl_key (a renewed certificate at the same paths): new connections
// get the new certificate, open ones keep going; a broken file keeps the current certificate.
TEST_F(TlsTest, SighupReloadsTheCertificateWithoutDroppingConnections) {
  StartServer();
  auto before = Subscriber("renewal");
  EXPECT_NE(ServedSubject(server_.port()).find("CN = localhost"), std::string::npos)
      << ServedSubject(server_.port());
  auto made =
      cable::test::RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", certs_.key(),
                               "-out", certs_.cert(), "-days", "2", "-subj", "/CN=renewed"},
                              60s);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  ASSERT_EQ(kill(server_.pid(), SIGHUP), 0);
  ASSERT_TRUE(LogShows(server_, "reloaded the TLS certificate", 1)) << server_.Log();
  EXPECT_NE(ServedSubject(server_.port()).find("CN = renewed"), std::string::npos)
      << ServedSubject(server_.port());
  ASSERT_EQ(Broadcast(Publication("renewal", "{\"n\":1}")), 201);
  EXPECT_EQ(before->NextMessage(10s).payload, Delivered(PubsubId("renewal"), "{\"n\":1}"))
      << "a connection from before the reload keeps working";

  {
    std::ofstream broken(certs_.cert(), std::ios::trunc);
    broken << "not a certificate\n";
  }
  ASSERT_EQ(kill(server_.pid(), SIGHUP), 0);
  ASSERT_TRUE(LogShows(server_, "keeping the current TLS certificate: cannot load --ssl_cert", 1))
      << server_.Log();
  EXPECT_NE(ServedSubject(server_.port()).find("CN = renewed"), std::string::npos);
  auto after = Subscriber("renewal");
  ASSERT_EQ(Broadcast(Publication("renewal", "{\"n\":2}")), 201);
  EXPECT_EQ(before->NextMessage(10s).payload, Delivered(PubsubId("renewal"), "{\"n\":2}"));
  EXPECT_EQ(after->NextMessage(10s).payload, Delivered(PubsubId("renewal"), "{\"n\":2}"));
  EXPECT_EQ(TlsErrors(), 0);
}

// Without TLS there is nothing to reload: SIGHUP is logged and the server keeps serving (before,
// SIGHUP's default action would have killed it).
TEST_F(TlsTest, SighupWithoutTlsIsHarmless) {
  ASSERT_TRUE(server_.Start(PublicArgs())) << server_.Log();
  ASSERT_EQ(kill(server_.pid(), SIGHUP), 0);
  ASSERT_TRUE(LogShows(server_, "received SIGHUP: nothing to reload (no --ssl_cert)", 1))
      << server_.Log();
  EXPECT_TRUE(server_.running());
  EXPECT_EQ(HttpRequest(server_.port(), "GET", "/health").status, 200);
}

TEST_F(TlsTest, LargeFramesBothWays) {
  // Several TLS records per frame, queued behind each other, in both directions.
  StartServer({"--max_message_size", "1048576", "--streams_whisper"});
  auto a = Subscriber("tls_big");
  auto b = Subscriber("tls_big");
  std::string big(200000, 'x');
  for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
  for (int i = 0; i < 3; ++i) {
    std::string data = "{\"n\":" + std::to_string(i) + ",\"blob\":\"" + big + "\"}";
    ASSERT_EQ(Broadcast(Publication("tls_big", data)), 201);
  }
  for (int i = 0; i < 3; ++i) {
    std::string data = "{\"n\":" + std::to_string(i) + ",\"blob\":\"" + big + "\"}";
    EXPECT_EQ(a->NextMessage(10s).payload, Delivered(PubsubId("tls_big"), data)) << i;
    EXPECT_EQ(b->NextMessage(10s).payload, Delivered(PubsubId("tls_big"), data)) << i;
  }
  // A 200 KB client message (a whisper, relayed to the other subscriber) arrives whole.
  std::string whisper =
      "{\"command\":\"whisper\",\"identifier\":" + cable::test::JsonString(PubsubId("tls_big")) +
      ",\"data\":" + cable::test::JsonString("{\"blob\":\"" + big + "\"}") + "}";
  ASSERT_TRUE(a->SendText(whisper));
  auto got = b->NextMessage(10s);
  EXPECT_NE(got.payload.find(big), std::string::npos);
}

// The first bytes of a real ClientHello (from an OpenSSL client writing into a memory BIO).
std::string PartialClientHello() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_connect_state(ssl);
  SSL_do_handshake(ssl);  // writes the ClientHello, then wants to read
  char buf[4096];
  int n = BIO_read(wbio, buf, sizeof(buf));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return n > 20 ? std::string(buf, static_cast<size_t>(n / 2)) : std::string();
}

// Opens a raw TCP connection, sends bytes, half-closes when asked, and reports whether the server
// closed the connection.
bool SendAndExpectClose(int port, const std::string& bytes, bool half_close) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return false;
  }
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (half_close) shutdown(fd, SHUT_WR);
  // Bounded: read until EOF / reset or 10 s.
  bool closed = false;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    timeval tv{0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char tmp[4096];
    ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      closed = true;
      break;
    }
  }
  close(fd);
  return closed;
}

TEST_F(TlsTest, FailedHandshakesAreClosedAndCountedWithoutHurtingOthers) {
  StartServer();
  auto client = Subscriber("tls_survivor");
  ASSERT_EQ(TlsErrors(), 0);

  // Plain HTTP to the TLS port.
  EXPECT_EQ(HttpRequest(server_.port(), "GET", "/health").status, 0);
  // Garbage.
  EXPECT_TRUE(SendAndExpectClose(server_.port(), std::string(300, '\x17') + "garbage", false));
  // A truncated ClientHello, then the client gives up (FIN).
  std::string partial = PartialClientHello();
  ASSERT_FALSE(partial.empty());
  EXPECT_TRUE(SendAndExpectClose(server_.port(), partial, true));
  // A connection that sends nothing and leaves is not a TLS error.
  EXPECT_TRUE(SendAndExpectClose(server_.port(), "", true));
  EXPECT_EQ(TlsErrors(), 3);

  // The established wss client is unaffected.
  ASSERT_EQ(Broadcast(Publication("tls_survivor", "{\"still\":\"here\"}")), 201);
  EXPECT_EQ(client->NextMessage(10s).payload,
            Delivered(PubsubId("tls_survivor"), "{\"still\":\"here\"}"));
  // And new ones still handshake.
  auto late = Subscriber("tls_survivor");
  ASSERT_EQ(Broadcast(Publication("tls_survivor", "{\"n\":2}")), 201);
  EXPECT_EQ(late->NextMessage(10s).payload, Delivered(PubsubId("tls_survivor"), "{\"n\":2}"));
  EXPECT_EQ(client->NextMessage(10s).payload, Delivered(PubsubId("tls_survivor"), "{\"n\":2}"));
}

// A client that stops in the middle of its handshake (half a ClientHello, socket left open) is
// dropped by --handshake_timeout like a slow HTTP request.
TEST_F(TlsTest, StalledHandshakeIsDroppedByTheHandshakeTimeout) {
  StartServer({"--handshake_timeout", "1"});
  auto client = Subscriber("tls_stall");
  std::string partial = PartialClientHello();
  ASSERT_FALSE(partial.empty());
  EXPECT_TRUE(SendAndExpectClose(server_.port(), partial, false))
      << "the server must close a stalled handshake within the 10 s bound";
  ASSERT_EQ(Broadcast(Publication("tls_stall", "{\"n\":1}")), 201);
  EXPECT_EQ(client->NextMessage(10s).payload, Delivered(PubsubId("tls_stall"), "{\"n\":1}"));
}

// A TLS client that ends its session with close_notify (and one that renegotiates-requests under
// TLS 1.2, refused) gets a clean close; nothing else is disturbed.
TEST_F(TlsTest, CloseNotifyAndRenegotiationEndOnlyThatConnection) {
  StartServer();
  auto client = Subscriber("tls_notify");
  for (bool renegotiate : {false, true}) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NE(ctx, nullptr);
    if (renegotiate) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    ASSERT_EQ(SSL_connect(ssl), 1) << "renegotiate=" << renegotiate;
    if (renegotiate) {
      SSL_renegotiate(ssl);
      SSL_do_handshake(ssl);  // sends the renegotiation ClientHello; the server refuses it
    } else {
      EXPECT_GE(SSL_shutdown(ssl), 0);  // close_notify
    }
    // Either way the server ends the connection: read until EOF or an error (bounded by
    // SO_RCVTIMEO).
    char buf[256];
    int n = 0;
    for (int i = 0; i < 100 && (n = SSL_read(ssl, buf, sizeof(buf))) > 0; ++i) {
    }
    EXPECT_LE(n, 0) << "renegotiate=" << renegotiate;
    char raw;
    EXPECT_LE(recv(fd, &raw, 1, 0), 0)
        << "the server closed the socket, renegotiate=" << renegotiate;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
  }
  ASSERT_EQ(Broadcast(Publication("tls_notify", "{\"n\":1}")), 201);
  EXPECT_EQ(client->NextMessage(10s).payload, Delivered(PubsubId("tls_notify"), "{\"n\":1}"));
}

// A TLS client over memory BIOs on a blocking socket, so a test controls how its ciphertext is cut
// into sends.
class PieceClient {
 public:
  explicit PieceClient(int port) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssl_ = SSL_new(ctx_);
    SSL_set_bio(ssl_, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(ssl_);
  }
  ~PieceClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    close(fd_);
  }
  // Everything the SSL wrote, sent `piece` bytes per send (the last one shorter).
  bool SendOutput(size_t piece, size_t drop_tail = 0) {
    std::string out;
    char buf[16384];
    int n;
    while ((n = BIO_read(SSL_get_wbio(ssl_), buf, sizeof(buf))) > 0) out.append(buf, n);
    out.resize(out.size() - std::min(drop_tail, out.size()));
    for (size_t off = 0; off < out.size(); off += piece) {
      size_t len = std::min(piece, out.size() - off);
      if (send(fd_, out.data() + off, len, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) return false;
    }
    return true;
  }
  // Feeds what arrives to the SSL until `done` says so; false on EOF or timeout.
  template <typename Done>
  bool ReceiveUntil(Done done) {
    char buf[16384];
    while (!done()) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      BIO_write(SSL_get_rbio(ssl_), buf, static_cast<int>(n));
    }
    return true;
  }
  bool Handshake(size_t piece) {
    for (int i = 0; i < 10; ++i) {
      int r = SSL_do_handshake(ssl_);
      if (!SendOutput(piece)) return false;
      if (r == 1) return true;
      if (SSL_get_error(ssl_, r) != SSL_ERROR_WANT_READ) return false;
      char buf[16384];
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      BIO_write(SSL_get_rbio(ssl_), buf, static_cast<int>(n));
    }
    return false;
  }
  // Plaintext read so far (after ReceiveUntil).
  std::string Plain() {
    char buf[16384];
    int n;
    while ((n = SSL_read(ssl_, buf, sizeof(buf))) > 0) plain_.append(buf, n);
    return plain_;
  }
  SSL* ssl() { return ssl_; }
  int fd() const { return fd_; }
  bool connected() const { return connected_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
  std::string plain_;
};

// The server reads ciphertext in place from each receive: records cut into one-byte sends (a
// partial record waits inside OpenSSL between receives) work, and a client that stops in the middle
// of a record and leaves (FIN) is closed without disturbing anyone else.
TEST_F(TlsTest, RecordsCutIntoPiecesAndATruncatedRecord) {
  StartServer();
  auto other = Subscriber("tls_pieces");
  PieceClient c(server_.port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Handshake(1));
  const std::string upgrade =
      "GET /cable HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n";
  ASSERT_EQ(SSL_write(c.ssl(), upgrade.data(), static_cast<int>(upgrade.size())),
            static_cast<int>(upgrade.size()));
  ASSERT_TRUE(c.SendOutput(1));
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find("welcome") != std::string::npos; }))
      << c.Plain();
  EXPECT_EQ(c.Plain().rfind("HTTP/1.1 101", 0), 0u) << c.Plain();
  // A ping frame's record minus its last 5 bytes, then FIN.
  const std::string ping("\x89\x80\x01\x02\x03\x04", 6);
  ASSERT_EQ(SSL_write(c.ssl(), ping.data(), static_cast<int>(ping.size())), 6);
  ASSERT_TRUE(c.SendOutput(3, 5));
  shutdown(c.fd(), SHUT_WR);
  char buf[4096];
  ssize_t n;
  while ((n = recv(c.fd(), buf, sizeof(buf), 0)) > 0) {
  }
  EXPECT_TRUE(n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
      << "the server closes the socket (not a 10 s timeout)";
  ASSERT_EQ(Broadcast(Publication("tls_pieces", "{\"n\":1}")), 201);
  EXPECT_EQ(other->NextMessage(10s).payload, Delivered(PubsubId("tls_pieces"), "{\"n\":1}"));
}

// The server ends every TLS connection it closes with close_notify after its last WebSocket frame,
// so a client can tell a finished stream from a truncated one.
TEST_F(TlsTest, CloseNotifyFollowsTheCloseFrame) {
  StartServer();
  // The client closes: the server echoes the close frame, then close_notify.
  auto a = Subscriber("tls_bye");
  ASSERT_TRUE(a->SendFrame(8, std::string("\x03\xe8", 2)));  // 1000
  WsFrame closed = a->WaitClose(10s);
  ASSERT_EQ(closed.opcode, 8);
  EXPECT_EQ(closed.close_code(), 1000);
  EXPECT_EQ(a->WaitTlsEnd(10s), SSL_ERROR_ZERO_RETURN);
  // The server closes on a protocol error (an unmasked client frame): 1002, then close_notify.
  auto b = Subscriber("tls_bye");
  ASSERT_TRUE(b->SendFrame(1, "{}", true, /*mask=*/false));
  closed = b->WaitClose(10s);
  ASSERT_EQ(closed.opcode, 8);
  EXPECT_EQ(closed.close_code(), 1002);
  EXPECT_EQ(b->WaitTlsEnd(10s), SSL_ERROR_ZERO_RETURN);
  // The client sends close_notify first (no close frame): the server answers with its own.
  auto c = Subscriber("tls_bye");
  ASSERT_EQ(SSL_shutdown(static_cast<SSL*>(c->ssl())), 0);
  EXPECT_EQ(c->WaitTlsEnd(10s), SSL_ERROR_ZERO_RETURN);
  // An HTTPS response with Connection: close: the response, then close_notify.
  {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NE(ctx, nullptr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    ASSERT_EQ(SSL_connect(ssl), 1);
    const std::string req = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(SSL_write(ssl, req.data(), static_cast<int>(req.size())),
              static_cast<int>(req.size()));
    std::string resp;
    char buf[4096];
    int n = 0;
    for (int i = 0; i < 100 && (n = SSL_read(ssl, buf, sizeof(buf))) > 0; ++i) resp.append(buf, n);
    EXPECT_EQ(resp.rfind("HTTP/1.1 200", 0), 0u) << resp;
    EXPECT_EQ(SSL_get_error(ssl, n), SSL_ERROR_ZERO_RETURN);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
  }
  // Shutdown: server_restart, close 1001, then close_notify.
  auto d = Subscriber("tls_bye");
  ASSERT_EQ(server_.Stop(), 0) << server_.Log();
  auto msg = d->NextMessage(10s);
  EXPECT_NE(msg.payload.find("server_restart"), std::string::npos) << msg.payload;
  closed = d->WaitClose(10s);
  ASSERT_EQ(closed.opcode, 8);
  EXPECT_EQ(closed.close_code(), 1001);
  EXPECT_EQ(d->WaitTlsEnd(10s), SSL_ERROR_ZERO_RETURN);
}

// Broadcasts queued for one connection in the same loop turn are encrypted together (records of up
// to 16 KiB): a burst arrives complete and in order.
TEST_F(TlsTest, BurstOfBroadcastsArrivesInOrder) {
  StartServer();
  auto client = Subscriber("tls_burst");
  std::string batch = "[";
  constexpr int kN = 200;
  for (int i = 0; i < kN; ++i) {
    if (i) batch += ",";
    batch += Publication("tls_burst", "{\"n\":" + std::to_string(i) + "}");
  }
  batch += "]";
  ASSERT_EQ(Broadcast(batch), 201);
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(client->NextMessage(10s).payload,
              Delivered(PubsubId("tls_burst"), "{\"n\":" + std::to_string(i) + "}"))
        << i;
  }
}

// ---- the compact record layer (--ssl_compact) -------------------------------------------------
// Established, quiet TLS 1.3 connections leave OpenSSL for ringcable's own record layer. These
// tests scrape metrics over a separate plain port, so the only TLS connections are the test's own.
class CompactTest : public TlsTest {
 protected:
  void StartCompact(std::vector<std::string> extra = {}) {
    mport_ = cable::test::FreePort();
    extra.insert(extra.end(), {"--metrics_port", std::to_string(mport_), "--streams_whisper"});
    StartServer(extra);
  }
  long long Metric(const std::string& name) {
    auto r = HttpRequest(mport_, "GET", "/metrics");
    EXPECT_EQ(r.status, 200);
    return SumSeries(r.body, name);
  }
  long long Compact() { return Metric("ringcable_worker_tls_compact_sessions_total"); }
  long long Errors() { return Metric("ringcable_worker_tls_errors_total"); }
  // Polls (bounded: 10 s) until the compact-session count reaches `want`; returns the last value.
  long long WaitCompact(long long want) {
    long long v = -1;
    for (int i = 0; i < 1000 && (v = Compact()) < want; ++i) {
      std::this_thread::sleep_for(10ms);  // polling interval only; the loop checks the outcome
    }
    return v;
  }
  // A client context offering only TLS 1.3 with `suite`, or only TLS 1.2 when suite is empty.
  SSL_CTX* ClientContext(const char* suite) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    if (suite) {
      SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
      EXPECT_EQ(SSL_CTX_set_ciphersuites(ctx, suite), 1);
    } else {
      SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    }
    ctxs_.emplace_back(ctx, &SSL_CTX_free);
    return ctx;
  }
  std::unique_ptr<WsClient> SubscriberWith(SSL_CTX* ctx, const std::string& stream) {
    auto c = std::make_unique<WsClient>();
    c->set_tls(true);
    c->set_tls_context(ctx);
    EXPECT_EQ(c->Connect(server_.port()), 101);
    EXPECT_TRUE(c->WaitFor("welcome").has_value());
    EXPECT_TRUE(c->SendText(SubscribeCommand(PubsubId(stream))));
    EXPECT_TRUE(c->WaitFor("confirm_subscription").has_value());
    return c;
  }
  std::string Whisper(const std::string& stream, const std::string& data_json) {
    return "{\"command\":\"whisper\",\"identifier\":" + cable::test::JsonString(PubsubId(stream)) +
           ",\"data\":" + data_json + "}";
  }
  // Traffic both ways on a compact connection `a` (with a plain-OpenSSL-independent peer `b`
  // subscribed to the same stream): a broadcast to a, a whisper from a to b, a ping answered.
  // Without `broadcast` no other TLS connection is made (an https broadcast is one).
  void BothWays(WsClient& a, WsClient& b, const std::string& stream, int n, bool broadcast = true) {
    const std::string data = "{\"n\":" + std::to_string(n) + "}";
    if (broadcast) {
      ASSERT_EQ(Broadcast(Publication(stream, data)), 201);
      EXPECT_EQ(a.NextMessage(10s).payload, Delivered(PubsubId(stream), data)) << n;
      EXPECT_EQ(b.NextMessage(10s).payload, Delivered(PubsubId(stream), data)) << n;
    }
    const std::string w = "{\"w\":" + std::to_string(n) + "}";
    ASSERT_TRUE(a.SendText(Whisper(stream, w)));
    auto got = b.NextMessage(10s);
    EXPECT_NE(got.payload.find(w), std::string::npos) << n << " " << got.payload;
    ASSERT_TRUE(a.SendFrame(9, "ping" + std::to_string(n)));
    WsFrame pong = a.Next(10s);
    EXPECT_EQ(pong.opcode, 10);
    EXPECT_EQ(pong.payload, "ping" + std::to_string(n));
  }

  int mport_ = 0;
  std::vector<std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>> ctxs_;
};

// Each TLS 1.3 suite: the connection switches, then frames flow both ways, through client
// KeyUpdates (answered with the server's own when requested), a burst coalesced into 16 KiB
// records, and a close_notify from the client answered with the server's.
TEST_F(CompactTest, EachSuiteSwitchesAndKeepsWorking) {
  StartCompact();
  int k = 0;
  for (const char* suite :
       {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
    SCOPED_TRACE(suite);
    const std::string stream = "compact_" + std::to_string(k);
    const long long before = Compact();
    auto a = SubscriberWith(ClientContext(suite), stream);
    ASSERT_EQ(WaitCompact(before + 1), before + 1);
    auto b = SubscriberWith(ClientContext(suite), stream);
    ASSERT_EQ(WaitCompact(before + 2), before + 2);
    SSL* ssl = static_cast<SSL*>(a->ssl());
    EXPECT_STREQ(SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), suite);
    BothWays(*a, *b, stream, 0);
    // The client asks for a key update: its next record is under the new key, and the server's
    // answer (its own KeyUpdate) switches the server's sending key too.
    for (int round = 1; round <= 3; ++round) {
      ASSERT_EQ(SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED), 1);
      BothWays(*a, *b, stream, round);
    }
    ASSERT_EQ(SSL_key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    BothWays(*a, *b, stream, 4);
    // A burst of broadcasts (more than 16 KiB) arrives complete and in order.
    std::string batch = "[";
    constexpr int kN = 300;
    for (int i = 0; i < kN; ++i) {
      if (i) batch += ",";
      batch += Publication(stream, "{\"burst\":" + std::to_string(i) + "}");
    }
    batch += "]";
    ASSERT_EQ(Broadcast(batch), 201);
    for (int i = 0; i < kN; ++i) {
      ASSERT_EQ(a->NextMessage(10s).payload,
                Delivered(PubsubId(stream), "{\"burst\":" + std::to_string(i) + "}"))
          << i;
      ASSERT_EQ(b->NextMessage(10s).payload,
                Delivered(PubsubId(stream), "{\"burst\":" + std::to_string(i) + "}"))
          << i;
    }
    // close_notify from the client: the server answers with its own.
    ASSERT_EQ(SSL_shutdown(ssl), 0);
    EXPECT_EQ(a->WaitTlsEnd(10s), SSL_ERROR_ZERO_RETURN);
    // The server closes (close frame, then close_notify) on a protocol error.
    ASSERT_TRUE(b->SendFrame(1, "{}", true, /*mask=*/false));
    WsFrame closed = b->WaitClose(10s);
    EXPECT_EQ(closed.close_code(), 1002);
    EXPECT_EQ(b->WaitTlsEnd(10s), SSL_ERROR_ZERO_RETURN);
    ++k;
  }
  EXPECT_EQ(Errors(), 0);
}

// A record whose ciphertext was changed fails its tag: that connection is closed and counted as
// a TLS error; others are untouched.
TEST_F(CompactTest, TamperedRecordClosesTheConnection) {
  StartCompact();
  auto other = Subscriber("compact_tamper");
  const long long before = Compact();
  PieceClient c(server_.port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Handshake(1 << 20));
  const std::string upgrade =
      "GET /cable HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n";
  ASSERT_EQ(SSL_write(c.ssl(), upgrade.data(), static_cast<int>(upgrade.size())),
            static_cast<int>(upgrade.size()));
  ASSERT_TRUE(c.SendOutput(1 << 20));
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find("welcome") != std::string::npos; }));
  ASSERT_EQ(WaitCompact(before + 1), before + 1);
  // A masked ping frame whose record has one ciphertext byte flipped.
  const std::string ping("\x89\x80\x01\x02\x03\x04", 6);
  ASSERT_EQ(SSL_write(c.ssl(), ping.data(), static_cast<int>(ping.size())), 6);
  std::string out;
  char buf[4096];
  int n;
  while ((n = BIO_read(SSL_get_wbio(c.ssl()), buf, sizeof(buf))) > 0) out.append(buf, n);
  ASSERT_GT(out.size(), 8u);
  out[7] ^= 0x40;  // inside the encrypted content (after the 5-byte header)
  ASSERT_EQ(send(c.fd(), out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  ssize_t r;
  while ((r = recv(c.fd(), buf, sizeof(buf), 0)) > 0) {
  }
  EXPECT_TRUE(r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
      << "the server closes the socket (not a 10 s timeout)";
  EXPECT_EQ(Errors(), 1);
  ASSERT_EQ(Broadcast(Publication("compact_tamper", "{\"n\":1}")), 201);
  EXPECT_EQ(other->NextMessage(10s).payload, Delivered(PubsubId("compact_tamper"), "{\"n\":1}"));
}

// Records cut into one-byte sends after the switch are put together by the compact layer.
TEST_F(CompactTest, RecordsInPiecesAfterTheSwitch) {
  StartCompact();
  const long long before = Compact();
  PieceClient c(server_.port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Handshake(1 << 20));
  // The server switches right after the handshake (nothing else was sent yet).
  ASSERT_EQ(WaitCompact(before + 1), before + 1);
  const std::string upgrade =
      "GET /cable HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n";
  ASSERT_EQ(SSL_write(c.ssl(), upgrade.data(), static_cast<int>(upgrade.size())),
            static_cast<int>(upgrade.size()));
  ASSERT_TRUE(c.SendOutput(1));
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find("welcome") != std::string::npos; }))
      << c.Plain();
  EXPECT_EQ(c.Plain().rfind("HTTP/1.1 101", 0), 0u) << c.Plain();
  // Two records in one send, the second cut: a ping then a second ping, 3 bytes at a time.
  const std::string ping("\x89\x80\x01\x02\x03\x04", 6);
  ASSERT_EQ(SSL_write(c.ssl(), ping.data(), 6), 6);
  ASSERT_EQ(SSL_write(c.ssl(), ping.data(), 6), 6);
  ASSERT_TRUE(c.SendOutput(3));
  const std::string pong("\x8a\x00", 2);
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find(pong + pong) != std::string::npos; }));
  EXPECT_EQ(Errors(), 0);
}

// Records OpenSSL handled after the handshake are counted both ways, so the compact layer starts
// at the right sequence numbers: the upgrade request rides with the client's Finished, the
// server's answer goes out while a record cut in half keeps the session on OpenSSL, and only then
// (the rest of that record received) does the session switch. Traffic after the switch, a
// KeyUpdate included, proves both counts.
TEST_F(CompactTest, SwitchAfterRecordsWentThroughOpenSsl) {
  StartCompact();
  const long long before = Compact();
  PieceClient c(server_.port());
  ASSERT_TRUE(c.connected());
  int r = 0;
  for (int i = 0; i < 10 && (r = SSL_do_handshake(c.ssl())) != 1; ++i) {
    ASSERT_EQ(SSL_get_error(c.ssl(), r), SSL_ERROR_WANT_READ);
    ASSERT_TRUE(c.SendOutput(1 << 20));
    char buf[16384];
    ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    BIO_write(SSL_get_rbio(c.ssl()), buf, static_cast<int>(n));
  }
  ASSERT_EQ(r, 1);  // the client's Finished is still unsent
  const std::string upgrade =
      "GET /cable HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n";
  ASSERT_EQ(SSL_write(c.ssl(), upgrade.data(), static_cast<int>(upgrade.size())),
            static_cast<int>(upgrade.size()));
  const std::string ping("\x89\x80\x01\x02\x03\x04", 6);
  ASSERT_EQ(SSL_write(c.ssl(), ping.data(), 6), 6);
  std::string out;
  char buf[16384];
  int n;
  while ((n = BIO_read(SSL_get_wbio(c.ssl()), buf, sizeof(buf))) > 0) out.append(buf, n);
  // Finished, the upgrade's record and all but the last 5 bytes of the ping's record.
  ASSERT_EQ(send(c.fd(), out.data(), out.size() - 5, MSG_NOSIGNAL),
            static_cast<ssize_t>(out.size() - 5));
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find("welcome") != std::string::npos; }))
      << c.Plain();
  EXPECT_EQ(Compact(), before) << "a partial record keeps the session on OpenSSL";
  ASSERT_EQ(send(c.fd(), out.data() + out.size() - 5, 5, MSG_NOSIGNAL), 5);
  const std::string pong("\x8a\x00", 2);
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find(pong) != std::string::npos; }));
  ASSERT_EQ(WaitCompact(before + 1), before + 1);
  // After the switch: subscribe (client → server), the confirmation and a pong (server → client),
  // then the same through a key update both ways.
  for (int round = 0; round < 2; ++round) {
    if (round == 1) {
      ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
    }
    const std::string stream = "compact_counted_" + std::to_string(round);
    std::string frame = SubscribeCommand(PubsubId(stream));
    std::string ws("\x81", 1);
    ws += static_cast<char>(0x80 | frame.size());
    ws += std::string("\0\0\0\0", 4);  // a zero mask keeps the payload as is
    ASSERT_LT(frame.size(), 126u);
    ws += frame;
    ws += ping;
    ASSERT_EQ(SSL_write(c.ssl(), ws.data(), static_cast<int>(ws.size())),
              static_cast<int>(ws.size()));
    ASSERT_TRUE(c.SendOutput(1 << 20));
    const size_t seen = c.Plain().size();
    ASSERT_TRUE(c.ReceiveUntil([&] {
      std::string p = c.Plain().substr(seen);
      return p.find("confirm_subscription") != std::string::npos &&
             p.find(pong) != std::string::npos;
    })) << round;
  }
  EXPECT_EQ(Errors(), 0);
  EXPECT_EQ(Compact(), before + 1);
}

// A KeyUpdate that OpenSSL handles (it came before the session was quiet) keeps the session on
// OpenSSL for good: the keys the compact layer would take are stale then.
TEST_F(CompactTest, KeyUpdateBeforeTheSwitchStaysOnOpenSsl) {
  StartCompact();
  const long long before = Compact();
  PieceClient c(server_.port());
  ASSERT_TRUE(c.connected());
  int r = 0;
  for (int i = 0; i < 10 && (r = SSL_do_handshake(c.ssl())) != 1; ++i) {
    ASSERT_EQ(SSL_get_error(c.ssl(), r), SSL_ERROR_WANT_READ);
    ASSERT_TRUE(c.SendOutput(1 << 20));
    char buf[16384];
    ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    BIO_write(SSL_get_rbio(c.ssl()), buf, static_cast<int>(n));
  }
  ASSERT_EQ(r, 1);
  // Finished, KeyUpdate and the upgrade request in one send.
  ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
  const std::string upgrade =
      "GET /cable HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n";
  ASSERT_EQ(SSL_write(c.ssl(), upgrade.data(), static_cast<int>(upgrade.size())),
            static_cast<int>(upgrade.size()));
  ASSERT_TRUE(c.SendOutput(1 << 20));
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find("welcome") != std::string::npos; }))
      << c.Plain();
  const std::string ping("\x89\x80\x01\x02\x03\x04", 6);
  ASSERT_EQ(SSL_write(c.ssl(), ping.data(), 6), 6);
  ASSERT_TRUE(c.SendOutput(1 << 20));
  const std::string pong("\x8a\x00", 2);
  ASSERT_TRUE(c.ReceiveUntil([&] { return c.Plain().find(pong) != std::string::npos; }));
  EXPECT_EQ(Compact(), before);
  EXPECT_EQ(Errors(), 0);
}

// TLS 1.2 connections stay on OpenSSL (and work); so does everything with --ssl_compact=false.
TEST_F(CompactTest, Tls12AndTheKnobStayOnOpenSsl) {
  StartCompact();
  const long long before = Compact();
  auto a = SubscriberWith(ClientContext(nullptr), "compact_12");
  auto b = SubscriberWith(ClientContext(nullptr), "compact_12");
  EXPECT_STREQ(SSL_get_version(static_cast<SSL*>(a->ssl())), "TLSv1.2");
  BothWays(*a, *b, "compact_12", 0, /*broadcast=*/false);
  EXPECT_EQ(Compact(), before);
  EXPECT_EQ(server_.Stop(), 0);

  StartCompact({"--ssl_compact=false"});
  auto c = SubscriberWith(ClientContext("TLS_AES_128_GCM_SHA256"), "compact_off");
  auto d = SubscriberWith(ClientContext("TLS_AES_128_GCM_SHA256"), "compact_off");
  ASSERT_EQ(SSL_key_update(static_cast<SSL*>(c->ssl()), SSL_KEY_UPDATE_REQUESTED), 1);
  BothWays(*c, *d, "compact_off", 1);
  EXPECT_EQ(Compact(), 0);
  EXPECT_EQ(Errors(), 0);
}

TEST_F(TlsTest, SeparateBroadcastPortSpeaksTlsToo) {
  // With a certificate the HTTP broadcast port is https:// as well (anycable-go 1.4.7+ serves both
  // over TLS); plain HTTP to it is a failed handshake, counted like one on the main port.
  int bport = cable::test::FreePort();
  StartServer({"--http_broadcast_port", std::to_string(bport)});
  auto client = Subscriber("tls_broadcast_port");
  auto r = HttpsRequest(bport, "POST", "/_broadcast",
                        {{"Authorization", std::string("Bearer ") + kBroadcastKey}},
                        Publication("tls_broadcast_port", "{\"ok\":1}"));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(client->NextMessage(10s).payload,
            Delivered(PubsubId("tls_broadcast_port"), "{\"ok\":1}"));
  auto plain = HttpRequest(bport, "POST", "/_broadcast",
                           {{"Authorization", std::string("Bearer ") + kBroadcastKey}},
                           Publication("tls_broadcast_port", "{\"ok\":2}"));
  EXPECT_NE(plain.status, 201) << "plain HTTP must not reach the broadcast handler";
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (TlsErrors() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(TlsErrors(), 1);
  ASSERT_EQ(HttpsRequest(bport, "POST", "/_broadcast",
                         {{"Authorization", std::string("Bearer ") + kBroadcastKey}},
                         Publication("tls_broadcast_port", "{\"ok\":3}"))
                .status,
            201);
  EXPECT_EQ(client->NextMessage(10s).payload,
            Delivered(PubsubId("tls_broadcast_port"), "{\"ok\":3}"))
      << "the plain request delivered nothing";
}

class TlsStartupTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(certs_.ok()) << certs_.error(); }
  cable::test::RunResult Run(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {cable::test::BinaryPath(),
                                     "--host",
                                     "127.0.0.1",
                                     "--port",
                                     std::to_string(cable::test::FreePort()),
                                     "--public"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return cable::test::RunCommand(argv, 20s);
  }
  CertDir certs_;
};

TEST_F(TlsStartupTest, MissingFile) {
  auto r = Run({"--ssl_cert", certs_.path("nope.pem"), "--ssl_key", certs_.key()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: cannot read --ssl_cert " + certs_.path("nope.pem") +
                          ": No such file or directory\n");
  r = Run({"--ssl_cert", certs_.cert(), "--ssl_key", certs_.path("nokey.pem")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: cannot read --ssl_key " + certs_.path("nokey.pem") +
                          ": No such file or directory\n");
}

TEST_F(TlsStartupTest, OnlyOneOfCertAndKey) {
  auto r = Run({"--ssl_cert", certs_.cert()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: --ssl_cert and --ssl_key must be given together\n");
}

TEST_F(TlsStartupTest, KeyDoesNotMatchCertificate) {
  auto r = Run({"--ssl_cert", certs_.cert(), "--ssl_key", certs_.other_key()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: --ssl_key " + certs_.other_key() +
                          " does not match the certificate in --ssl_cert " + certs_.cert() + "\n");
}

TEST_F(TlsStartupTest, NotPem) {
  {
    std::ofstream f(certs_.path("junk.pem"));
    f << "this is not a certificate\n";
  }
  auto r = Run({"--ssl_cert", certs_.path("junk.pem"), "--ssl_key", certs_.key()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(
      r.output.rfind("ringcable: cannot load --ssl_cert " + certs_.path("junk.pem") + ": ", 0), 0u)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  // A certificate given as the key.
  r = Run({"--ssl_cert", certs_.cert(), "--ssl_key", certs_.cert()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("ringcable: cannot load --ssl_key " + certs_.cert() + ": ", 0), 0u)
      << r.output;
}

TEST_F(TlsStartupTest, EnvironmentNames) {
  auto r = cable::test::RunCommand(
      {cable::test::BinaryPath(), "--port", std::to_string(cable::test::FreePort()), "--public"},
      20s, {{"ANYCABLE_SSL_CERT", certs_.cert()}, {"ANYCABLE_SSL_KEY", certs_.other_key()}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("does not match the certificate"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace cable::ittls
