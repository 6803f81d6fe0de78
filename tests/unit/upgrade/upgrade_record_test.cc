// upgrade: the connection record round-trips every field, a truncated or padded record is refused,
// and the control channel carries bytes and descriptors over a real SEQPACKET socketpair.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upgrade/upgrade.h"

namespace cable::upgrade {
namespace {

ConnRecord Sample() {
  ConnRecord r;
  r.token = (uint64_t{7} << 32) | 42;
  r.worker = 3;
  r.sid = "sid-1";
  r.identifiers = R"({"current_user":"alice"})";
  r.url = "ws://example.com/cable?user=alice";
  r.headers = {{"cookie", "a=b"}, {"REMOTE_ADDR", "127.0.0.1"}};
  r.cstate = {{"last", "v"}, {"empty", ""}};
  SubRecord s1;
  s1.identifier = R"({"channel":"ChatChannel"})";
  s1.streams = {"room1", "room2"};
  s1.has_istate = true;
  s1.istate = {{"k", "v"}};
  SubRecord s2;
  s2.identifier = R"({"channel":"$pubsub","stream_name":"x"})";
  s2.streams = {"x"};
  s2.builtin = true;
  r.subs = {s1, s2};
  r.ext = true;
  r.deflate = true;
  r.needs_disconnect_rpc = true;
  r.used_rpc = true;
  r.restorable = true;
  r.ping_precision = 1;
  r.ping_period = 30;
  return r;
}

TEST(UpgradeRecord, RoundTrip) {
  ConnRecord in = Sample();
  ConnRecord out;
  ASSERT_TRUE(Decode(Encode(in), &out));
  EXPECT_EQ(out.token, in.token);
  EXPECT_EQ(out.worker, in.worker);
  EXPECT_EQ(out.sid, in.sid);
  EXPECT_EQ(out.identifiers, in.identifiers);
  EXPECT_EQ(out.url, in.url);
  EXPECT_EQ(out.headers, in.headers);
  EXPECT_EQ(out.cstate, in.cstate);
  ASSERT_EQ(out.subs.size(), 2u);
  EXPECT_EQ(out.subs[0].identifier, in.subs[0].identifier);
  EXPECT_EQ(out.subs[0].streams, in.subs[0].streams);
  EXPECT_TRUE(out.subs[0].has_istate);
  EXPECT_EQ(out.subs[0].istate, in.subs[0].istate);
  EXPECT_FALSE(out.subs[0].builtin);
  EXPECT_TRUE(out.subs[1].builtin);
  EXPECT_FALSE(out.subs[1].has_istate);
  EXPECT_TRUE(out.ext && out.deflate && out.authenticated && out.needs_disconnect_rpc);
  EXPECT_FALSE(out.rpc_free_auth);
  EXPECT_TRUE(out.used_rpc && out.restorable);
  EXPECT_EQ(out.ping_precision, 1);
  EXPECT_EQ(out.ping_period, 30u);
  EXPECT_FALSE(out.http);

  ConnRecord http;
  http.http = true;
  http.listener = 2;  // a REST API port
  ConnRecord back;
  ASSERT_TRUE(Decode(Encode(http), &back));
  EXPECT_TRUE(back.http);
  EXPECT_EQ(back.listener, 2);
}

TEST(UpgradeRecord, RefusesTruncatedOrPadded) {
  std::string bytes = Encode(Sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    ConnRecord r;
    EXPECT_FALSE(Decode(bytes.substr(0, n), &r)) << n;
  }
  ConnRecord r;
  EXPECT_FALSE(Decode(bytes + "x", &r));
  // A count far larger than the bytes left is refused before anything is allocated for it.
  std::string huge = bytes.substr(0, 12) + std::string("\xff\xff\xff\x7f", 4);
  EXPECT_FALSE(Decode(huge, &r));
}

// The pub/sub fence's list (fence name, then the streams): any bytes in a stream name survive;
// truncated or padded input is refused.
TEST(UpgradeStrings, RoundTripAndRefusals) {
  const std::vector<std::string> in = {"__ringcable_upgrade__.1.ab", "", std::string("a\0\nb", 4),
                                       "chat/1"};
  const std::string bytes = EncodeStrings(in);
  std::vector<std::string> out;
  ASSERT_TRUE(DecodeStrings(bytes, &out));
  EXPECT_EQ(out, in);
  for (size_t n = 0; n < bytes.size(); ++n) EXPECT_FALSE(DecodeStrings(bytes.substr(0, n), &out));
  EXPECT_FALSE(DecodeStrings(bytes + "x", &out));
  EXPECT_FALSE(DecodeStrings(std::string("\xff\xff\xff\x7f", 4), &out));
}

// Optional sections (tags 40–49): the presence section round-trips, an unknown tag is skipped,
// a truncated or malformed section is refused.
TEST(UpgradeRecord, PresenceSectionRoundTripsAndUnknownTagsAreSkipped) {
  ConnRecord in = Sample();
  EXPECT_FALSE([&] {
    ConnRecord out;
    return Decode(Encode(in), &out) && out.presence_joined;
  }());
  in.presence_joined = true;
  in.presence = {{"room", "u1", R"({"name":"Jo"})"}, {"hall", "u1", ""}};
  std::string bytes = Encode(in);
  ConnRecord out;
  ASSERT_TRUE(Decode(bytes, &out));
  EXPECT_TRUE(out.presence_joined);
  ASSERT_EQ(out.presence.size(), 2u);
  EXPECT_EQ(out.presence[0].stream, "room");
  EXPECT_EQ(out.presence[0].id, "u1");
  EXPECT_EQ(out.presence[0].info_json, R"({"name":"Jo"})");
  EXPECT_EQ(out.presence[1].stream, "hall");
  EXPECT_EQ(out.presence[1].info_json, "");
  // A remote broker's session: joined, no records carried.
  ConnRecord remote = Sample();
  remote.presence_joined = true;
  ConnRecord remote_out;
  ASSERT_TRUE(Decode(Encode(remote), &remote_out));
  EXPECT_TRUE(remote_out.presence_joined);
  EXPECT_TRUE(remote_out.presence.empty());
  // A section this reader does not know (tag 49, 3 bytes) is skipped, before or after a known one.
  const std::string unknown = std::string(
      "\x31\x03\x00\x00\x00"
      "abc",
      8);
  std::string base = Encode(Sample());
  ConnRecord skipped;
  ASSERT_TRUE(Decode(base + unknown + bytes.substr(base.size()), &skipped));
  EXPECT_TRUE(skipped.presence_joined);
  EXPECT_EQ(skipped.presence.size(), 2u);
  // Truncated anywhere in the sections: refused.
  for (size_t n = base.size() + 1; n < bytes.size(); ++n) {
    ConnRecord r;
    EXPECT_FALSE(Decode(bytes.substr(0, n), &r)) << n;
  }
  // A presence section whose body has bytes left over: refused.
  std::string padded = base + std::string("\x28\x05\x00\x00\x00\x00\x00\x00\x00z", 10);
  ConnRecord r;
  EXPECT_FALSE(Decode(padded, &r));
}

TEST(UpgradeRecord, SseSectionRoundTripsAndABadKindIsRefused) {
  ConnRecord in = Sample();
  in.sse = ConnRecord::Sse::kPost;
  ConnRecord out;
  ASSERT_TRUE(Decode(Encode(in), &out));
  EXPECT_EQ(out.sse, ConnRecord::Sse::kPost);
  EXPECT_FALSE(out.sse_raw);
  in.sse = ConnRecord::Sse::kGet;
  in.sse_raw = true;
  in.presence_joined = true;  // both sections together
  ConnRecord both;
  ASSERT_TRUE(Decode(Encode(in), &both));
  EXPECT_EQ(both.sse, ConnRecord::Sse::kGet);
  EXPECT_TRUE(both.sse_raw);
  EXPECT_TRUE(both.presence_joined);
  // Kind 0 (not SSE) or 3 (unknown) inside the section: refused, not guessed.
  std::string base = Encode(Sample());
  for (char kind : {'\x00', '\x03'}) {
    ConnRecord r;
    EXPECT_FALSE(Decode(base + std::string("\x29\x02\x00\x00\x00", 5) + kind + '\x00', &r));
  }
}

TEST(UpgradeRecord, TlsSectionRoundTripsAndOversizedSecretsAreRefused) {
  ConnRecord in = Sample();
  in.tls = true;
  in.tls_suite = 2;
  in.tls_rx_secret = std::string(48, 'r');
  in.tls_tx_secret = std::string(48, 't');
  in.tls_rx_seq = 5;
  in.tls_tx_seq = (uint64_t{1} << 40) + 3;
  ConnRecord out;
  ASSERT_TRUE(Decode(Encode(in), &out));
  EXPECT_TRUE(out.tls);
  EXPECT_EQ(out.tls_suite, 2);
  EXPECT_EQ(out.tls_rx_secret, in.tls_rx_secret);
  EXPECT_EQ(out.tls_tx_secret, in.tls_tx_secret);
  EXPECT_EQ(out.tls_rx_seq, 5u);
  EXPECT_EQ(out.tls_tx_seq, in.tls_tx_seq);
  in.tls_rx_secret = std::string(65, 'r');
  ConnRecord big;
  EXPECT_FALSE(Decode(Encode(in), &big));
}

TEST(UpgradeRecord, PollSectionRoundTripsAndNeedsAnId) {
  ConnRecord in = Sample();
  in.poll = true;
  in.poll_id = "1.abcdef";
  in.poll_expires_in_ms = 4500;
  in.poll_queued = "{\"a\":1}\n{\"b\":2}\n";
  ConnRecord out;
  ASSERT_TRUE(Decode(Encode(in), &out));
  EXPECT_TRUE(out.poll);
  EXPECT_EQ(out.poll_id, in.poll_id);
  EXPECT_EQ(out.poll_expires_in_ms, 4500u);
  EXPECT_EQ(out.poll_queued, in.poll_queued);
  in.poll_id.clear();
  ConnRecord no_id;
  EXPECT_FALSE(Decode(Encode(in), &no_id));
}

TEST(UpgradeControl, PacketsCarryBytesAndDescriptors) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  Packet p;
  p.type = Type::kConn;
  p.bytes = Encode(Sample());
  p.fds = {pipefd[1]};
  ASSERT_TRUE(SendPacket(sv[0], p));
  Packet q;
  ASSERT_EQ(RecvPacket(sv[1], &q, 5000), 1);
  EXPECT_EQ(q.type, Type::kConn);
  EXPECT_EQ(q.bytes, p.bytes);
  ASSERT_EQ(q.fds.size(), 1u);
  // The received descriptor is the same pipe: a byte written to it arrives at the read end.
  ASSERT_EQ(write(q.fds[0], "z", 1), 1);
  char c = 0;
  ASSERT_EQ(read(pipefd[0], &c, 1), 1);
  EXPECT_EQ(c, 'z');
  close(q.fds[0]);
  // Nothing pending: a timeout; the peer gone: end of stream.
  EXPECT_EQ(RecvPacket(sv[1], &q, 0), 0);
  close(sv[0]);
  EXPECT_EQ(RecvPacket(sv[1], &q, 5000), -1);
  close(sv[1]);
  close(pipefd[0]);
  close(pipefd[1]);
}

}  // namespace
}  // namespace cable::upgrade
