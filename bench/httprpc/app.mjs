// The demo RPC app of tools/rpc_stub, over HTTP: as trivial as the gRPC stub, for bench/httprpc.
//   connect    → SUCCESS, identifiers {"current_user":<user>}, welcome with the sid, cstate user
//   subscribe  → SUCCESS, stream = the identifier's "stream" (else its channel), confirm
//   other      → SUCCESS, nothing
//   disconnect → SUCCESS
// Node's own http server, keep-alive, no dependencies. Prints "listening on <port>".
//   node bench/httprpc/app.mjs --port 29052
import http from "node:http";

const port = Number(process.argv[process.argv.indexOf("--port") + 1] || 0);

function answer(path, req, sid) {
  if (path.endsWith("/connect")) {
    const user = new URL(req.env?.url ?? "http://x/").searchParams.get("user") ?? "anonymous";
    return {
      status: 1,
      identifiers: JSON.stringify({ current_user: user }),
      transmissions: [JSON.stringify({ type: "welcome", sid })],
      env: { cstate: { user } },
    };
  }
  if (path.endsWith("/command") && req.command === "subscribe") {
    const ident = JSON.parse(req.identifier);
    return {
      status: 1,
      streams: [ident.stream ?? ident.channel],
      transmissions: [JSON.stringify({ type: "confirm_subscription", identifier: req.identifier })],
    };
  }
  return { status: 1 };
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = JSON.stringify(
      answer(req.url, JSON.parse(Buffer.concat(chunks).toString("utf8")), req.headers["x-anycable-meta-sid"] ?? ""),
    );
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
