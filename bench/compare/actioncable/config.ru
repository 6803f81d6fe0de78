# Minimal standalone Action Cable app (Debian ruby-actioncable 6.1 + puma), the peer that
# bench/compare/run.sh measures next to ringcable. No Rails, no Redis: the "async" (in-process)
# subscription adapter, so puma must run a single process (no cluster workers).
#
#   /cable        Action Cable WebSocket endpoint (actioncable-v1-json)
#   /_broadcast   POST {"stream":"...","data":"<JSON string>"} (AnyCable's publication format),
#                 calls ActionCable.server.broadcast(stream, JSON.parse(data)); 201 like anycable-go.
require "json"
require "logger"
require "action_cable"
require_relative "bench_channel"

# Identifies by the `user` query param, anonymous otherwise (no RPC, no database).
class BenchConnection < ActionCable::Connection::Base
  identified_by :current_user

  def connect
    self.current_user = request.params["user"] || "anonymous"
  end
end

logger = Logger.new($stderr)
logger.level = Logger::WARN
ActionCable.server.config.logger = logger
ActionCable.server.config.cable = { "adapter" => "async" }
ActionCable.server.config.connection_class = -> { BenchConnection }
ActionCable.server.config.disable_request_forgery_protection = true
ActionCable.server.config.worker_pool_size = Integer(ENV.fetch("AC_WORKER_POOL", "4"))

broadcast = lambda do |env|
  return [405, { "Content-Type" => "text/plain" }, ["POST only\n"]] unless env["REQUEST_METHOD"] == "POST"

  begin
    body = JSON.parse(env["rack.input"].read)
    items = body.is_a?(Array) ? body : [body]
    items.each do |pub|
      data = pub["data"]
      ActionCable.server.broadcast(pub.fetch("stream"), data.is_a?(String) ? JSON.parse(data) : data)
    end
    [201, { "Content-Type" => "text/plain", "Content-Length" => "0" }, []]
  rescue JSON::ParserError, KeyError, TypeError => e
    [422, { "Content-Type" => "text/plain" }, ["#{e.class}: #{e.message}\n"]]
  end
end

map("/cable") { run ActionCable.server }
map("/_broadcast") { run broadcast }
