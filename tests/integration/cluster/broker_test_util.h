// Helpers shared by the cluster-wide broker tests (redis_broker_test, nats_broker_test): frames
// of the extended protocol and an ext client on a node of the two-node ClusterTest.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "cluster_fixture.h"

namespace cable::itcluster {

inline constexpr const char* kExt = "actioncable-v1-ext-json";

inline std::string StringField(const std::string& json, const std::string& key) {
  const std::string quoted = "\"" + key + "\":\"";
  size_t b = json.find(quoted);
  if (b == std::string::npos) return "";
  b += quoted.size();
  return json.substr(b, json.find('"', b) - b);
}

inline int64_t OffsetOf(const std::string& frame) {
  size_t at = frame.find("\"offset\":");
  if (at == std::string::npos) return -1;
  return std::strtoll(frame.c_str() + at + 9, nullptr, 10);
}

// The frame an ext subscriber gets for a stamped publication.
inline std::string Stamped(const std::string& identifier, int seq, const std::string& stream,
                           const std::string& epoch, int64_t offset) {
  return "{\"identifier\":" + JsonString(identifier) + ",\"message\":" + SeqData(seq) +
         ",\"stream_id\":" + JsonString(stream) + ",\"epoch\":" + JsonString(epoch) +
         ",\"offset\":" + std::to_string(offset) + "}";
}

inline std::string HistoryFrom(const std::string& identifier, const std::string& stream,
                               const std::string& epoch, int64_t offset) {
  return "{\"command\":\"history\",\"identifier\":" + JsonString(identifier) +
         ",\"history\":{\"streams\":{" + JsonString(stream) + ":{\"epoch\":" + JsonString(epoch) +
         ",\"offset\":" + std::to_string(offset) + "}}}}";
}

inline std::string Reply(const std::string& type, const std::string& identifier) {
  return "{\"type\":\"" + type + "\",\"identifier\":" + JsonString(identifier) + "}";
}

class ExtClusterTest : public ClusterTest {
 protected:
  void TearDown() override {
    ClusterTest::TearDown();
    if (!store_dir_.empty()) std::filesystem::remove_all(store_dir_);
  }

  // nats-server with JetStream (its store in a private directory, kept across nats_.Restart())
  // and a monitoring port; false when nats-server is not installed.
  bool StartJetStream() {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) return false;
    char tmpl[] = "/tmp/ringcable-js-XXXXXX";
    if (!mkdtemp(tmpl)) return false;
    store_dir_ = tmpl;
    nats_monitor_port_ = cable::test::FreePort();
    EXPECT_TRUE(nats_.Start({"-js", "-sd", store_dir_, "-m", std::to_string(nats_monitor_port_)}))
        << nats_.Log();
    return nats_.running();
  }

  // Messages in the JetStream sessions bucket (monitoring /jsz), -1 when unknown.
  int64_t StoredSessions() {
    auto r = cable::test::HttpRequest(nats_monitor_port_, "GET", "/jsz?streams=true");
    if (r.status != 200) return -1;
    size_t at = r.body.find("\"KV__ringcable_sessions_\"");  // the monitor pretty-prints
    if (at == std::string::npos) return 0;
    at = r.body.find("\"messages\":", at);
    if (at == std::string::npos) return -1;
    return std::strtoll(r.body.c_str() + at + 11, nullptr, 10);  // skips the blank
  }

  // An ext client on `node`; the welcome text in *welcome.
  std::unique_ptr<WsClient> ConnectExt(int node, std::string* welcome,
                                       const std::map<std::string, std::string>& headers = {}) {
    auto ws = std::make_unique<WsClient>();
    EXPECT_EQ(ws->Connect(nodes_[node].port(), "/cable?user=u", headers, {kExt}), 101);
    WsFrame f = ws->NextMessage(10s);
    *welcome = f.payload;
    return ws;
  }

  // Subscribes and waits (bounded) until the node is subscribed to the stream's channel/subject.
  void SubscribeExt(WsClient& ws, const std::string& stream, bool nats = false) {
    ASSERT_TRUE(Subscribe(ws, StreamId(stream)));
    if (nats) {
      ASSERT_TRUE(WaitNatsSubscribed({stream}, 1));
    } else {
      ASSERT_TRUE(WaitRedisSubscribed({stream}, 1));
    }
  }

  std::string Next(WsClient& ws) {
    WsFrame f = ws.NextMessage(10s);
    return f.opcode == 1 ? f.payload : "";
  }

  std::string store_dir_;  // StartJetStream's
};

}  // namespace cable::itcluster
