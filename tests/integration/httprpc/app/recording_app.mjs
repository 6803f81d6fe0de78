// A recording AnyCable RPC-over-HTTP app with scripted faults, for ringcable's httprpc tests.
//
//   node recording_app.mjs --port <port> [--tls-cert <pem> --tls-key <pem>]
//
// With a certificate it serves https:// instead of http://.
// Prints "listening on <port>", then one line per request, exactly as received:
//   REQ <path> auth=<Authorization> sid=<x-anycable-meta-sid> protov=<x-anycable-meta-protov>
//       ctype=<Content-Type> body=<raw body>          (all on one line)
// The answer is picked by a "fault" named in the request: the query parameter `fault` of the
// client's URL (env.url) for /connect, the identifier's `fault` field for /command:
//   (none)    a normal answer: welcome / confirm_subscription + stream
//   500 401 422       that status, a short text body
//   html      200 with an HTML page
//   truncated 200 with JSON cut in the middle (a complete HTTP message)
//   enum      200 with "status": 7
//   huge      200 with a 10 MB body, streamed in chunks
//   silent    never answers (the request stays open until the client gives up)
//   cut       a status line and half a body, then the connection is destroyed
//   drop      the connection is destroyed without any answer
import fs from "node:fs";
import http from "node:http";
import https from "node:https";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, v, i, all) => (i % 2 ? pairs : [...pairs, [v.replace(/^--/, ""), all[i + 1]]]), []),
);

function faultOf(path, payload) {
  try {
    if (path.endsWith("/connect")) return new URL(payload.env.url).searchParams.get("fault") ?? "";
    if (path.endsWith("/command")) return JSON.parse(payload.identifier).fault ?? "";
  } catch {
    return "";
  }
  return "";
}

function normalAnswer(path, payload, sid) {
  if (path.endsWith("/connect")) {
    return { status: 1, identifiers: JSON.stringify({ sid }), transmissions: [JSON.stringify({ type: "welcome", sid })] };
  }
  if (path.endsWith("/command")) {
    const confirm = JSON.stringify({ identifier: payload.identifier, type: "confirm_subscription" });
    return payload.command === "subscribe"
      ? { status: 1, streams: ["recorded"], transmissions: [confirm] }
      : { status: 1, transmissions: [JSON.stringify({ identifier: payload.identifier, message: { ok: true } })] };
  }
  return { status: 1 };
}

const handle = (req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8");
    const h = req.headers;
    console.log(
      `REQ ${req.url} auth=${h.authorization ?? ""} sid=${h["x-anycable-meta-sid"] ?? ""} ` +
        `protov=${h["x-anycable-meta-protov"] ?? ""} ctype=${h["content-type"] ?? ""} body=${raw}`,
    );
    let payload = {};
    try {
      payload = JSON.parse(raw);
    } catch {
      res.writeHead(400).end("bad json");
      return;
    }
    const json = (obj) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(obj));
    switch (faultOf(req.url, payload)) {
      case "500":
        res.writeHead(500).end("Internal Server Error");
        return;
      case "401":
        res.writeHead(401).end("Unauthorized");
        return;
      case "422":
        res.writeHead(422).end("Unprocessable Entity");
        return;
      case "html":
        res.writeHead(200, { "content-type": "text/html" }).end("<!DOCTYPE html><html><body>We'll be back soon</body></html>");
        return;
      case "truncated":
        res.writeHead(200, { "content-type": "application/json" }).end('{"status":1,"identifiers":"x","transmissions":["{\\"type\\":');
        return;
      case "enum":
        json({ status: 7, identifiers: "x", transmissions: ['{"type":"welcome"}'], streams: ["enum"] });
        return;
      case "huge": {
        res.writeHead(200, { "content-type": "application/json" });
        const chunk = "x".repeat(64 * 1024);
        let sent = 0;
        res.write('{"status":1,"error_msg":"');
        const more = () => {
          while (sent < 10 * 1024 * 1024) {
            sent += chunk.length;
            if (!res.write(chunk)) return res.once("drain", more);
          }
          res.end('"}');
        };
        res.on("error", () => {});
        more();
        return;
      }
      case "silent":
        return;
      case "cut":
        res.socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{"status":1,"tra');
        res.socket.destroy();
        return;
      case "drop":
        res.socket.destroy();
        return;
      default:
        json(normalAnswer(req.url, payload, h["x-anycable-meta-sid"] ?? ""));
    }
  });
};
const server = args["tls-cert"]
  ? https.createServer({ cert: fs.readFileSync(args["tls-cert"]), key: fs.readFileSync(args["tls-key"]) }, handle)
  : http.createServer(handle);
server.on("clientError", (err, socket) => socket.destroy());

server.listen(Number(args.port ?? 0), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
