// The real @anycable/serverless-js application behind Node's http server: what a serverless /
// single-process AnyCable app serves at <base>/connect, /command and /disconnect.
//
//   node serverless_app.mjs --port <port> [--secret <http rpc secret>]
//
// Prints "listening on <port>" once ready, and one line per lifecycle event the tests wait for
// ("disconnect <identifiers> <subscriptions>"). With --secret, a request without
// "Authorization: Bearer <secret>" gets 401, as AnyCable's SDKs answer.
import http from "node:http";
import { Application, Channel, handler } from "@anycable/serverless-js";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, v, i, all) => (i % 2 ? pairs : [...pairs, [v.replace(/^--/, ""), all[i + 1]]]), []),
);

class CableApplication extends Application {
  async connect(handle) {
    const user = new URL(handle.env.url).searchParams.get("user");
    if (!user) {
      handle.reject();
      return;
    }
    handle.identifiedBy({ user });
  }

  async disconnect(handle) {
    console.log(`disconnect ${JSON.stringify(handle.identifiers)}`);
  }
}

// subscribe: streams from chat:<room> and keeps a counter in the channel state (istate).
class ChatChannel extends Channel {
  async subscribed(handle, params) {
    if (!params || !params.room) {
      handle.reject();
      return;
    }
    handle.streamFrom(`chat:${params.room}`);
    handle.state = { count: 0 };
  }

  async unsubscribed(handle, params) {
    console.log(`unsubscribed ${params.room}`);
  }

  // Echoes the payload back to the caller with the channel state's counter, counted up.
  async echo(handle, params, data) {
    const count = (handle.state?.count ?? 0) + 1;
    handle.state = { count };
    handle.transmit({ echo: data.text, count, user: handle.identifiers.user });
  }
}

const app = new CableApplication();
app.registerChannel("ChatChannel", new ChatChannel());

const server = http.createServer(async (req, res) => {
  if (args.secret && req.headers.authorization !== `Bearer ${args.secret}`) {
    res.writeHead(401).end();
    return;
  }
  const request = new Request(`http://${req.headers.host}${req.url}`, {
    method: req.method,
    headers: req.headers,
    body: req,
    duplex: "half",
  });
  try {
    const body = JSON.stringify(await handler(request, app));
    res.writeHead(200, { "content-type": "application/json" }).end(body);
  } catch (e) {
    console.log(`error ${e.message}`);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: 0, error_msg: "Server error" }));
  }
});

server.listen(Number(args.port ?? 0), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
