# The channel the load tool subscribes to: {"channel":"BenchmarkChannel","stream":"..."}.
# Confirms every subscription (Action Cable sends confirm_subscription after `subscribed`) and
# streams from the identifier's "stream" param, like tools/rpc_stub does for ringcable.
class BenchmarkChannel < ActionCable::Channel::Base
  def subscribed
    stream_from params[:stream].to_s
  end
end
