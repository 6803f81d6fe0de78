// Client commands and their Command RPC round trips through the real binary (spec §1
// "Subscribe"/"Unsubscribe"/"Perform", "Connection & channel state"; §5 items 6-16).

#include <sys/socket.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <thread>

#include "core_fixture.h"

namespace cable::itcore {
namespace {

using cable::tools::Metadata;

class CommandsTest : public CoreTest {
 protected:
  // Connects as alice (sid "s1") on a default server.
  void Open(WsClient& ws, const std::vector<std::string>& extra = {},
            const std::string& path = "/cable?user=alice") {
    StartServer(extra);
    ConnectWelcome(ws, "s1", path);
  }
};

std::map<std::string, std::string> ToMap(const google::protobuf::Map<std::string, std::string>& m) {
  return {m.begin(), m.end()};
}

TEST_F(CommandsTest, SubscribeCallsCommandRpcWithIdentifiersAndConnectState) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws, {}, "/cable?user=alice"));
  const std::string id = WsClient::Identifier("ChatChannel", {{"id", "42"}});
  SubscribeConfirmed(ws, id);
  auto cmds = rpc_.commands();
  ASSERT_EQ(cmds.size(), 1u);
  const anycable::CommandMessage& m = cmds[0].request;
  EXPECT_EQ(m.command(), "subscribe");
  EXPECT_EQ(m.identifier(), id);
  EXPECT_EQ(m.connection_identifiers(), R"({"current_user":"alice"})");
  EXPECT_EQ(m.data(), "");
  EXPECT_EQ(m.env().url(),
            "http://127.0.0.1:" + std::to_string(server_.port()) + "/cable?user=alice");
  EXPECT_EQ(ToMap(m.env().headers()),
            (std::map<std::string, std::string>{{"REMOTE_ADDR", "127.0.0.1"}}));
  EXPECT_EQ(ToMap(m.env().cstate()), (std::map<std::string, std::string>{{"user", "alice"}}));
  EXPECT_TRUE(m.env().istate().empty());
  EXPECT_EQ(cmds[0].meta.sid, "s1");
  EXPECT_EQ(cmds[0].meta.protov, "v1");
}

TEST_F(CommandsTest, IdentifierIsOpaqueAndComparedByteExactly) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string a = R"({"channel":"A","id":1})";
  const std::string b = R"({"id":1,"channel":"A"})";
  SubscribeConfirmed(ws, a);
  SubscribeConfirmed(ws, b);  // not a duplicate: different bytes
  EXPECT_EQ(CommandCount(), 2u);
}

TEST_F(CommandsTest, DuplicateSubscribeMakesNoRpcAndSendsNothing) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("ChatChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.Subscribe(id));
  Barrier(ws);  // the next message is the pong: no second confirmation
  EXPECT_EQ(CommandCount(), 1u);
}

TEST_F(CommandsTest, UnsubscribeCallsRpcAndRemovesStreams) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string chat = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  const std::string ctl = WsClient::Identifier("CtlChannel", {{"stream", "ctl"}});
  SubscribeConfirmed(ws, chat);
  SubscribeConfirmed(ws, ctl);
  Broadcast("[" + Publication("room1", R"({"n":1})") + "," + Publication("ctl", R"({"n":2})") +
            "]");
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(chat, R"({"n":1})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(ctl, R"({"n":2})"));

  ASSERT_TRUE(ws.SendText(R"({"command":"unsubscribe","identifier":)" + JsonString(chat) + "}"));
  Barrier(ws);  // no reply frame for unsubscribe
  auto cmds = rpc_.commands();
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds[2].request.command(), "unsubscribe");
  EXPECT_EQ(cmds[2].request.identifier(), chat);
  EXPECT_EQ(cmds[2].request.connection_identifiers(), R"({"current_user":"alice"})");

  // One batch keeps its order: if room1 were still delivered it would come first.
  Broadcast("[" + Publication("room1", R"({"n":3})") + "," + Publication("ctl", R"({"n":4})") +
            "]");
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(ctl, R"({"n":4})"));

  // The subscription is gone: a message for it is ignored without an RPC...
  ASSERT_TRUE(ws.Perform(chat, R"({"action":"echo"})"));
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 3u);
  // ...and subscribing again is a fresh subscription.
  SubscribeConfirmed(ws, chat);
  EXPECT_EQ(CommandCount(), 4u);
}

TEST_F(CommandsTest, UnsubscribeRemovesStreamsEvenIfTheAppKeepsThem) {
  // The app answers unsubscribe with SUCCESS and no stop_streams: the server removes them anyway.
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.command() == "unsubscribe") {
          r->set_status(anycable::SUCCESS);
          return grpc::Status::OK;
        }
        return ScriptedRpcServer::DemoCommand(m, meta, r);
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string chat = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  const std::string ctl = WsClient::Identifier("CtlChannel", {{"stream", "ctl"}});
  SubscribeConfirmed(ws, chat);
  SubscribeConfirmed(ws, ctl);
  ASSERT_TRUE(ws.SendText(R"({"command":"unsubscribe","identifier":)" + JsonString(chat) + "}"));
  Barrier(ws);
  Broadcast("[" + Publication("room1", R"({"n":3})") + "," + Publication("ctl", R"({"n":4})") +
            "]");
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(ctl, R"({"n":4})"));
}

TEST_F(CommandsTest, UnknownIdentifierForMessageAndUnsubscribeMakesNoRpc) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("NeverSubscribed");
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo"})"));
  ASSERT_TRUE(ws.SendText(R"({"command":"unsubscribe","identifier":)" + JsonString(id) + "}"));
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 0u);
}

TEST_F(CommandsTest, MessageWithObjectDataIsRejectedWithoutRpc) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.SendText(R"({"command":"message","identifier":)" + JsonString(id) +
                          R"(,"data":{"action":"echo"}})"));
  ASSERT_TRUE(ws.SendText(R"({"command":"message","identifier":)" + JsonString(id) + "}"));
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 1u);
  // The connection keeps working.
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo","ok":true})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"action":"echo","ok":true})"));
  EXPECT_EQ(CommandCount(), 2u);
}

TEST_F(CommandsTest, UnknownOrMissingCommandIsIgnoredAndConnectionKeepsWorking) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.SendText(R"({"command":"dance","identifier":)" + JsonString(id) + "}"));
  ASSERT_TRUE(ws.SendText(R"({"identifier":)" + JsonString(id) + "}"));
  ASSERT_TRUE(ws.SendText(R"({"command":"pong"})"));  // no reply to a client pong
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 1u);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo"})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"action":"echo"})"));
}

TEST_F(CommandsTest, ClientPingGetsPong) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  ASSERT_TRUE(ws.SendText(R"({"command":"ping"})"));
  WsFrame f = ws.NextMessage();
  EXPECT_EQ(f.opcode, 1);
  EXPECT_EQ(f.payload, R"({"type":"pong"})");
}

TEST_F(CommandsTest, MalformedJsonStopsCommandProcessingButKeepsConnectionOpen) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws, {}, "/cable?user=alice&pi=1"));
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.SendText("{\"command\":\"ping\""));  // truncated JSON
  ASSERT_TRUE(ws.SendText(R"({"command":"ping"})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo"})"));
  // Pings keep arriving, no pong, no echo, no close.
  int pings = 0;
  auto deadline = std::chrono::steady_clock::now() + 6s;
  while (pings < 2 && std::chrono::steady_clock::now() < deadline) {
    WsFrame f = ws.Next(6s);
    ASSERT_EQ(f.opcode, 1) << "unexpected frame/close/EOF, close code " << f.close_code();
    ASSERT_EQ(f.payload.rfind(R"({"type":"ping","message":)", 0), 0u) << f.payload;
    ++pings;
  }
  EXPECT_EQ(pings, 2);
  EXPECT_EQ(CommandCount(), 1u);
  // Broadcasts are still delivered.
  Broadcast(Publication("room1", R"({"after":"malformed"})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"after":"malformed"})"));
}

TEST_F(CommandsTest, SubscribeFailureSendsRejectAndRecordsNothing) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("RejectChannel");
  ASSERT_TRUE(ws.Subscribe(id));
  EXPECT_EQ(ws.NextMessage().payload, RejectFrame(id));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo"})"));
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 1u);
  // Not recorded, so subscribing again is not a duplicate.
  ASSERT_TRUE(ws.Subscribe(id));
  EXPECT_EQ(ws.NextMessage().payload, RejectFrame(id));
  EXPECT_EQ(CommandCount(), 2u);
}

TEST_F(CommandsTest, SubscribeFailureDoesNotKeepStreams) {
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.command() == "subscribe" && m.identifier().find("Bad") != std::string::npos) {
          r->set_status(anycable::FAILURE);
          r->add_streams("room1");
          r->add_transmissions("rejected");
          return grpc::Status::OK;
        }
        return ScriptedRpcServer::DemoCommand(m, meta, r);
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string bad = WsClient::Identifier("BadChannel");
  const std::string ctl = WsClient::Identifier("CtlChannel", {{"stream", "ctl"}});
  ASSERT_TRUE(ws.Subscribe(bad));
  EXPECT_EQ(ws.NextMessage().payload, "rejected");
  SubscribeConfirmed(ws, ctl);
  Broadcast("[" + Publication("room1", R"({"n":1})") + "," + Publication("ctl", R"({"n":2})") +
            "]");
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(ctl, R"({"n":2})"));
}

TEST_F(CommandsTest, SubscribeErrorSendsNoFrameAndRecordsNothing) {
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.identifier().find("Broken") != std::string::npos) {
          r->set_status(anycable::ERROR);
          r->set_error_msg("boom");
          r->add_transmissions("must not be sent");
          return grpc::Status::OK;
        }
        if (m.identifier().find("Crash") != std::string::npos) {
          return grpc::Status(grpc::StatusCode::INTERNAL, "crash");
        }
        return ScriptedRpcServer::DemoCommand(m, meta, r);
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string broken = WsClient::Identifier("BrokenChannel");
  const std::string crash = WsClient::Identifier("CrashChannel");
  ASSERT_TRUE(ws.Subscribe(broken));
  ASSERT_TRUE(ws.Subscribe(crash));
  Barrier(ws);  // nothing before the pong
  EXPECT_EQ(CommandCount(), 2u);
  ASSERT_TRUE(ws.Perform(broken, R"({"action":"echo"})"));
  ASSERT_TRUE(ws.Perform(crash, R"({"action":"echo"})"));
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 2u);
}

TEST_F(CommandsTest, MessageErrorSendsNoFrameAndSubscriptionSurvives) {
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.command() == "message" && m.data().find("\"bad\"") != std::string::npos) {
          r->set_status(anycable::ERROR);
          r->add_transmissions("must not be sent");
          return grpc::Status::OK;
        }
        if (m.command() == "message" && m.data().find("\"crash\"") != std::string::npos) {
          return grpc::Status(grpc::StatusCode::UNKNOWN, "crash");
        }
        return ScriptedRpcServer::DemoCommand(m, meta, r);
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"bad"})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"crash"})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"error"})"));  // demo ERROR
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 4u);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo"})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"action":"echo"})"));
}

TEST_F(CommandsTest, FailureStatusOnMessageStillSendsTransmissions) {
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.command() == "message") {
          r->set_status(anycable::FAILURE);
          r->add_transmissions("failed but said so");
          return grpc::Status::OK;
        }
        return ScriptedRpcServer::DemoCommand(m, meta, r);
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"x"})"));
  EXPECT_EQ(ws.NextMessage().payload, "failed but said so");
}

TEST_F(CommandsTest, DisconnectTrueSendsTransmissionsThenClose1006) {
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.command() == "message") {
          r->set_status(anycable::SUCCESS);
          r->set_disconnect(true);
          r->add_transmissions("bye1");
          r->add_transmissions(R"({"type":"bye2"})");
          return grpc::Status::OK;
        }
        return ScriptedRpcServer::DemoCommand(m, meta, r);
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"kick"})"));
  ASSERT_TRUE(ws.SendText(R"({"command":"ping"})"));  // must not be answered
  WsFrame f = ws.Next();
  EXPECT_EQ(f.payload, "bye1");
  f = ws.Next();
  EXPECT_EQ(f.payload, R"({"type":"bye2"})");
  f = ws.Next();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1006);
  EXPECT_EQ(f.close_reason(), "Command Failed");
  EXPECT_TRUE(ws.WaitEof());
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; }, 5s));
  EXPECT_EQ(rpc_.disconnects()[0].request.identifiers(), R"({"current_user":"alice"})");
}

TEST_F(CommandsTest, StateMergeUpsertsAndDeletesWithEmptyValue) {
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.command() != "message") return ScriptedRpcServer::DemoCommand(m, meta, r);
        r->set_status(anycable::SUCCESS);
        auto* istate = r->mutable_env()->mutable_istate();
        auto* cstate = r->mutable_env()->mutable_cstate();
        if (m.data().find("set") != std::string::npos) {
          (*istate)["a"] = "1";
          (*istate)["b"] = "2";
          (*cstate)["c"] = "3";
        } else if (m.data().find("del") != std::string::npos) {
          (*istate)["a"] = "";
          (*istate)["b"] = "22";
          (*cstate)["c"] = "";
          (*cstate)["user"] = "";
          (*cstate)["d"] = "4";
        }
        return grpc::Status::OK;
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("StateChannel");
  const std::string other = WsClient::Identifier("OtherChannel");
  SubscribeConfirmed(ws, id);
  SubscribeConfirmed(ws, other);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"set"})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"look"})"));
  ASSERT_TRUE(ws.Perform(other, R"({"action":"look"})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"del"})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"look"})"));
  Barrier(ws);
  auto cmds = rpc_.commands();
  ASSERT_EQ(cmds.size(), 7u);
  using M = std::map<std::string, std::string>;
  // [2] set: state before it.
  EXPECT_EQ(ToMap(cmds[2].request.env().istate()), M{});
  EXPECT_EQ(ToMap(cmds[2].request.env().cstate()), (M{{"user", "alice"}}));
  // [3] sees the set.
  EXPECT_EQ(ToMap(cmds[3].request.env().istate()), (M{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(ToMap(cmds[3].request.env().cstate()), (M{{"c", "3"}, {"user", "alice"}}));
  // [4] other identifier: its own (empty) istate, the shared cstate.
  EXPECT_EQ(ToMap(cmds[4].request.env().istate()), M{});
  EXPECT_EQ(ToMap(cmds[4].request.env().cstate()), (M{{"c", "3"}, {"user", "alice"}}));
  // [6] after the delete.
  EXPECT_EQ(ToMap(cmds[6].request.env().istate()), (M{{"b", "22"}}));
  EXPECT_EQ(ToMap(cmds[6].request.env().cstate()), (M{{"d", "4"}}));
}

TEST_F(CommandsTest, CommandsOfOneConnectionRunOneAtATimeInOrder) {
  struct Tracker {
    std::mutex mu;
    int inflight = 0;
    int max_inflight = 0;
    std::vector<std::string> order;
  };
  auto tracker = std::make_shared<Tracker>();
  rpc_.SetCommandHandler([tracker](const anycable::CommandMessage& m, const Metadata& meta,
                                   anycable::CommandResponse* r) {
    {
      std::lock_guard<std::mutex> lock(tracker->mu);
      ++tracker->inflight;
      tracker->max_inflight = std::max(tracker->max_inflight, tracker->inflight);
      tracker->order.push_back(m.data());
    }
    std::this_thread::sleep_for(100ms);
    {
      std::lock_guard<std::mutex> lock(tracker->mu);
      --tracker->inflight;
    }
    return ScriptedRpcServer::DemoCommand(m, meta, r);
  });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  std::vector<std::string> sent;
  std::string burst;
  for (int i = 1; i <= 5; ++i) {
    sent.push_back(R"({"action":"echo","n":)" + std::to_string(i) + "}");
  }
  for (const auto& d : sent) ASSERT_TRUE(ws.Perform(id, d));
  for (const auto& d : sent) EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, d));
  std::lock_guard<std::mutex> lock(tracker->mu);
  EXPECT_EQ(tracker->max_inflight, 1);
  ASSERT_EQ(tracker->order.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(tracker->order.begin() + 1, tracker->order.end()), sent);
}

TEST_F(CommandsTest, StoppedStreamsAndStopStreams) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "s1"}});
  const std::string ctl = WsClient::Identifier("CtlChannel", {{"stream", "ctl"}});
  SubscribeConfirmed(ws, id);
  SubscribeConfirmed(ws, ctl);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"follow","stream":"s2"})"));
  Barrier(ws);
  const std::string batch = "[" + Publication("s1", R"({"n":1})") + "," +
                            Publication("s2", R"({"n":2})") + "," +
                            Publication("ctl", R"({"n":3})") + "]";
  Broadcast(batch);
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"n":1})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"n":2})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(ctl, R"({"n":3})"));

  // stopped_streams removes just that stream.
  ASSERT_TRUE(ws.Perform(id, R"({"action":"unfollow","stream":"s1"})"));
  Barrier(ws);
  Broadcast(batch);
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"n":2})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(ctl, R"({"n":3})"));

  // stop_streams removes all streams of this subscription only; it stays subscribed.
  ASSERT_TRUE(ws.Perform(id, R"({"action":"stop_all"})"));
  Barrier(ws);
  Broadcast(batch);
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(ctl, R"({"n":3})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo"})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"action":"echo"})"));
}

TEST_F(CommandsTest, StreamsAreActiveBeforeConfirmationIsSent) {
  // A broadcast accepted after the confirmation must be delivered (spec §5 item 11).
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "fresh"}});
  SubscribeConfirmed(ws, id);
  Broadcast(Publication("fresh", R"({"first":true})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"first":true})"));
}

TEST_F(CommandsTest, UnsubscribeFailureStillRemovesButErrorKeepsSubscription) {
  rpc_.SetCommandHandler(
      [](const anycable::CommandMessage& m, const Metadata& meta, anycable::CommandResponse* r) {
        if (m.command() == "unsubscribe") {
          r->set_status(m.identifier().find("Keep") != std::string::npos ? anycable::ERROR
                                                                         : anycable::FAILURE);
          return grpc::Status::OK;
        }
        return ScriptedRpcServer::DemoCommand(m, meta, r);
      });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string gone = WsClient::Identifier("GoneChannel", {{"stream", "gone"}});
  const std::string keep = WsClient::Identifier("KeepChannel", {{"stream", "keep"}});
  SubscribeConfirmed(ws, gone);
  SubscribeConfirmed(ws, keep);
  ASSERT_TRUE(ws.SendText(R"({"command":"unsubscribe","identifier":)" + JsonString(gone) + "}"));
  ASSERT_TRUE(ws.SendText(R"({"command":"unsubscribe","identifier":)" + JsonString(keep) + "}"));
  Barrier(ws);
  EXPECT_EQ(CommandCount(), 4u);
  Broadcast("[" + Publication("gone", R"({"n":1})") + "," + Publication("keep", R"({"n":2})") +
            "]");
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(keep, R"({"n":2})"));
  // FAILURE removed `gone` (no RPC for it any more); ERROR kept `keep`.
  ASSERT_TRUE(ws.Perform(gone, R"({"action":"echo"})"));
  ASSERT_TRUE(ws.Perform(keep, R"({"action":"echo"})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(keep, R"({"action":"echo"})"));
  EXPECT_EQ(CommandCount(), 5u);
}

TEST_F(CommandsTest, SlowCommandBlocksOnlyItsOwnConnection) {
  Gate release;
  rpc_.SetCommandHandler([open = release.flag()](const anycable::CommandMessage& m,
                                                 const Metadata& meta,
                                                 anycable::CommandResponse* r) {
    if (m.data().find("\"hold\"") != std::string::npos) Gate::Wait(open);
    return ScriptedRpcServer::DemoCommand(m, meta, r);
  });
  StartServer();
  WsClient slow;
  WsClient quick;
  ConnectWelcome(slow, "slow");
  ConnectWelcome(quick, "quick");
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(slow, id);
  SubscribeConfirmed(quick, id);
  ASSERT_TRUE(slow.Perform(id, R"({"action":"echo","x":"hold"})"));
  ASSERT_TRUE(slow.SendText(R"({"command":"ping"})"));  // queued behind the held command
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.commands().size() == 3; }, 5s));
  // The other connection is not blocked.
  ASSERT_TRUE(quick.Perform(id, R"({"action":"echo","x":"free"})"));
  EXPECT_EQ(quick.NextMessage().payload, MessageFrame(id, R"({"action":"echo","x":"free"})"));
  Barrier(quick);
  release.Open();
  EXPECT_EQ(slow.NextMessage().payload, MessageFrame(id, R"({"action":"echo","x":"hold"})"));
  EXPECT_EQ(slow.NextMessage().payload, R"({"type":"pong"})");
}

TEST_F(CommandsTest, LargeBacklogBehindSlowCommandIsProcessedInOrder) {
  // ~150 KiB of frames queue up behind a held command: the server stops reading (backpressure)
  // and resumes once the backlog drains, losing and reordering nothing.
  Gate release;
  rpc_.SetCommandHandler([open = release.flag()](const anycable::CommandMessage& m,
                                                 const Metadata& meta,
                                                 anycable::CommandResponse* r) {
    if (m.data().find("\"hold\"") != std::string::npos) Gate::Wait(open);
    return ScriptedRpcServer::DemoCommand(m, meta, r);
  });
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo","x":"hold"})"));
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.commands().size() == 2; }, 5s));
  constexpr int kFrames = 150;
  const std::string pad(1000, 'p');
  std::vector<std::string> sent;
  for (int i = 0; i < kFrames; ++i) {
    sent.push_back(R"({"action":"echo","i":)" + std::to_string(i) + R"(,"pad":")" + pad + "\"}");
  }
  // Send from another thread: once the server stops reading, our writes block until it resumes.
  std::thread writer([&] {
    for (const auto& d : sent) {
      if (!ws.Perform(id, d)) return;
    }
  });
  release.Open();
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"action":"echo","x":"hold"})"));
  for (int i = 0; i < kFrames; ++i) {
    WsFrame f = ws.NextMessage(10s);
    if (f.payload != MessageFrame(id, sent[i])) {
      ADD_FAILURE() << "frame " << i << ": " << f.payload.substr(0, 80);
      shutdown(ws.fd(), SHUT_RDWR);  // unblocks the writer
      break;
    }
  }
  writer.join();
  EXPECT_EQ(CommandCount(), static_cast<size_t>(kFrames + 2));
}

TEST_F(CommandsTest, FragmentedAndBinaryMessagesAreCommandsToo) {
  WsClient ws;
  ASSERT_NO_FATAL_FAILURE(Open(ws));
  ASSERT_TRUE(ws.SendFrame(1, R"({"command")", /*fin=*/false));
  ASSERT_TRUE(ws.SendFrame(9, "mid"));  // a control frame between fragments is allowed
  ASSERT_TRUE(ws.SendFrame(0, R"(:"ping"})", /*fin=*/true));
  // Both replies, in either order: when all three frames arrive in one read the server answers
  // the ping after the message (gorilla answers it first; clients cannot tell).
  std::multiset<std::pair<int, std::string>> got;
  for (int i = 0; i < 2; ++i) {
    WsFrame f = ws.Next();
    got.insert({f.opcode, f.payload});
  }
  EXPECT_EQ(got,
            (std::multiset<std::pair<int, std::string>>{{10, "mid"}, {1, R"({"type":"pong"})"}}));
  ASSERT_TRUE(ws.SendFrame(2, R"({"command":"ping"})"));
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"pong"})");
}

TEST_F(CommandsTest, FramesInTheSamePacketAsTheUpgradeAreProcessedAfterWelcome) {
  StartServer();
  // Hand-built: the upgrade request and two masked frames in a single write.
  auto masked = [](const std::string& payload) {
    std::string f;
    f += static_cast<char>(0x81);
    f += static_cast<char>(0x80 | payload.size());
    const char key[4] = {0x11, 0x22, 0x33, 0x44};
    f.append(key, 4);
    for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
    return f;
  };
  const std::string id = WsClient::Identifier("EchoChannel");
  std::string bytes =
      "GET /cable HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "X-Request-ID: eager\r\n\r\n";
  bytes += masked(R"({"command":"subscribe","identifier":)" + JsonString(id) + "}");
  bytes += masked(R"({"command":"ping"})");
  // Unmasked server frames are all short here: 2-byte headers.
  const std::string want =
      "\x81" + std::string(1, static_cast<char>(WelcomeFrame("eager").size())) +
      WelcomeFrame("eager") + "\x81" + std::string(1, static_cast<char>(ConfirmFrame(id).size())) +
      ConfirmFrame(id) + "\x81\x0f" + R"({"type":"pong"})";
  std::string got = RawExchange(server_.port(), bytes, R"({"type":"pong"})");
  size_t head_end = got.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << got;
  EXPECT_EQ(got.rfind("HTTP/1.1 101", 0), 0u) << got;
  EXPECT_EQ(got.substr(head_end + 4), want);
}

}  // namespace
}  // namespace cable::itcore
