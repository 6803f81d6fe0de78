// OpenSSL heap held by idle server TLS sessions: N tls::Session objects (the server's own code,
// the server's SSL_CTX settings) each complete a handshake with an in-process client over memory
// BIOs, exchange one message both ways and then sit idle, as an idle wss:// connection does. Every
// OpenSSL allocation made on the server side is counted (CRYPTO_set_mem_functions); the client's
// are not. Prints live bytes and blocks per idle session and the allocations by size. TLS 1.3
// sessions have moved to the compact record layer by then (SSL freed) unless --ssl_compact's
// default is changed in ServerContext; "nocompact" as the last argument keeps them on OpenSSL.
//
//   build/bench/tls/tls_heap CERT.pem KEY.pem [N=1000] [tls12|tls13] [nocompact]
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tls/tls.h"

namespace {

bool g_count = false;  // count allocations made now (server-side calls only)
long g_live = 0;
long g_blocks = 0;
std::map<size_t, long>* g_sizes = nullptr;

struct alignas(16) Header {
  size_t size;
  bool counted;
};

void* Alloc(size_t n, const char*, int) {
  auto* h = static_cast<Header*>(std::malloc(n + sizeof(Header)));
  if (!h) return nullptr;
  h->size = n;
  h->counted = g_count;
  if (g_count) {
    g_count = false;  // the map allocates through operator new, not OpenSSL; be safe anyway
    g_live += static_cast<long>(n);
    ++g_blocks;
    ++(*g_sizes)[n];
    g_count = true;
  }
  return h + 1;
}

void Free(void* p, const char*, int) {
  if (!p) return;
  Header* h = static_cast<Header*>(p) - 1;
  if (h->counted) {
    bool was = g_count;
    g_count = false;
    g_live -= static_cast<long>(h->size);
    --g_blocks;
    if (--(*g_sizes)[h->size] == 0) g_sizes->erase(h->size);
    g_count = was;
  }
  std::free(h);
}

void* Realloc(void* p, size_t n, const char* f, int l) {
  if (!p) return Alloc(n, f, l);
  Header* h = static_cast<Header*>(p) - 1;
  void* q = Alloc(n, f, l);
  if (q) std::memcpy(q, p, h->size < n ? h->size : n);
  Free(p, f, l);
  return q;
}

// Client output → server.
void ToServer(SSL* client, cable::tls::Session& server, std::string& scratch) {
  char buf[16384];
  int n;
  scratch.clear();
  while ((n = BIO_read(SSL_get_wbio(client), buf, sizeof(buf))) > 0) scratch.append(buf, n);
  server.Feed(scratch.data(), scratch.size());
}

// Server output → client.
void ToClient(cable::tls::Session& server, SSL* client) {
  std::string out(server.PendingOutput(), '\0');
  out.resize(server.TakeOutput(out.data(), out.size()));
  if (!out.empty()) BIO_write(SSL_get_rbio(client), out.data(), static_cast<int>(out.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CERT.pem KEY.pem [N] [tls12]\n", argv[0]);
    return 2;
  }
  g_sizes = new std::map<size_t, long>;
  CRYPTO_set_mem_functions(Alloc, Realloc, Free);
  const int n = argc > 3 ? std::atoi(argv[3]) : 1000;
  const bool tls12 = argc > 4 && std::strcmp(argv[4], "tls12") == 0;
  auto ctx = cable::tls::ServerContext::Load(argv[1], argv[2]);
  if (!ctx.ok()) {
    std::fprintf(stderr, "%s\n", ctx.error().c_str());
    return 1;
  }
  if (argc > 5 && std::strcmp(argv[5], "nocompact") == 0) ctx.value()->set_compact(false);
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  if (tls12) SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
  std::vector<std::unique_ptr<cable::tls::Session>> sessions;
  std::string scratch;
  std::string version;
  for (int i = 0; i < n; ++i) {
    SSL* c = SSL_new(cctx);
    SSL_set_bio(c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(c);
    g_count = true;
    auto s = std::make_unique<cable::tls::Session>(*ctx.value());
    g_count = false;
    cable::tls::Session::Status st = cable::tls::Session::Status::kWantMore;
    for (int round = 0; round < 10 && st != cable::tls::Session::Status::kDone; ++round) {
      SSL_do_handshake(c);
      ToServer(c, *s, scratch);
      g_count = true;
      st = s->Handshake();
      g_count = false;
      ToClient(*s, c);
    }
    SSL_do_handshake(c);
    char buf[64];
    SSL_write(c, "hello", 5);
    ToServer(c, *s, scratch);
    g_count = true;
    size_t got = s->Read(buf, sizeof(buf), &st);
    cable::tls::Session::Status more;
    s->Read(buf, sizeof(buf), &more);  // drains: wants more
    bool wrote = s->Write("x", 1);
    g_count = false;
    ToClient(*s, c);
    if (st != cable::tls::Session::Status::kWantMore || got != 5 || !wrote ||
        SSL_read(c, buf, sizeof(buf)) != 1) {
      std::fprintf(stderr, "session %d: the exchange failed (%s)\n", i, s->last_error().c_str());
      return 1;
    }
    if (version.empty()) version = SSL_get_version(c);
    SSL_free(c);
    sessions.push_back(std::move(s));
  }
  int compact = 0;
  for (const auto& s : sessions) compact += s->compact() ? 1 : 0;
  std::printf(
      "%s, %d idle sessions (%d on the compact record layer): %ld B of OpenSSL heap in "
      "%.1f blocks per session, plus the tls::Session object (%zu B)\n",
      version.c_str(), n, compact, g_live / n, static_cast<double>(g_blocks) / n,
      sizeof(cable::tls::Session));
  for (const auto& [size, count] : *g_sizes) {
    if (count >= n / 2) {
      std::printf("  %6zu B x %.2f\n", size, static_cast<double>(count) / n);
    }
  }
  SSL_CTX_free(cctx);
  return 0;
}
