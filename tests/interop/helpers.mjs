// Shared plumbing for the interop scenarios: server addresses (from run.sh), a `ws` WebSocket
// subclass that records every frame (so a failing scenario can show exactly what was exchanged),
// HTTP broadcasting and bounded waits.
import WebSocket from 'ws'

function requiredEnv(name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set; run the scenarios through tests/interop/run.sh`)
  return v
}

export const CABLE_PORT = requiredEnv('RINGCABLE_INTEROP_PORT')
export const BROADCAST_PORT = requiredEnv('RINGCABLE_INTEROP_BROADCAST_PORT')
export const cableURL = (query = 'user=alice') => `ws://127.0.0.1:${CABLE_PORT}/cable?${query}`

// Per-scenario bound for a single wait; whole tests carry their own node:test timeout as well.
export const WAIT_MS = 10000

// Every frame of every socket opened by this process, in order: ">>" client→server, "<<" server→client.
export const transcript = []
let socketSeq = 0

export class LoggingWebSocket extends WebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options)
    const id = ++socketSeq
    this._logId = id
    transcript.push(`#${id} open ${url} protocols=${JSON.stringify(protocols)}`)
    this.on('upgrade', res => {
      transcript.push(`#${id} upgrade ${res.statusCode} sec-websocket-protocol=${res.headers['sec-websocket-protocol']}`)
    })
    this.on('unexpected-response', (_req, res) => {
      transcript.push(`#${id} unexpected-response ${res.statusCode}`)
    })
    this.on('message', (data, isBinary) => {
      transcript.push(`#${id} << ${isBinary ? '<binary>' : data.toString()}`)
    })
    this.on('close', (code, reason) => {
      transcript.push(`#${id} closed code=${code} reason=${JSON.stringify(reason.toString())}`)
    })
    this.on('error', err => transcript.push(`#${id} error ${err.message}`))
  }

  send(data, ...rest) {
    transcript.push(`#${this._logId} >> ${typeof data === 'string' ? data : '<binary>'}`)
    return super.send(data, ...rest)
  }

  close(code, reason) {
    transcript.push(`#${this._logId} client close(${code ?? ''})`)
    return super.close(code, reason)
  }
}

// Runs a scenario body; on failure the frame transcript is appended to the error message.
export async function withTranscript(fn) {
  const start = transcript.length
  try {
    await fn()
  } catch (err) {
    const frames = transcript.slice(start).join('\n  ')
    err.message = `${err.message}\n--- frames exchanged in this scenario ---\n  ${frames || '(none)'}`
    throw err
  }
}

// Resolves with the value passed to the returned `resolve`, rejects after `ms` with `what`.
export function deferred(what, ms = WAIT_MS) {
  let resolve, reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  // A wait nobody ended up needing (e.g. "rejected" of a confirmed subscription) must not keep the
  // test process alive; while a scenario really waits, its open socket / node:test keep it running.
  timer.unref()
  promise.then(
    () => clearTimeout(timer),
    () => clearTimeout(timer)
  )
  return { promise, resolve, reject }
}

// A queue of values pushed by a callback; `next(what)` waits (bounded) for the next one.
export class Inbox {
  constructor(name) {
    this.name = name
    this.items = []
    this.waiters = []
  }

  push(item) {
    const w = this.waiters.shift()
    if (w) w.resolve(item)
    else this.items.push(item)
  }

  next(what = `a message on ${this.name}`, ms = WAIT_MS) {
    if (this.items.length) return Promise.resolve(this.items.shift())
    const d = deferred(what, ms)
    this.waiters.push(d)
    return d.promise
  }
}

export async function broadcast(publication) {
  const body = JSON.stringify(publication)
  const res = await fetch(`http://127.0.0.1:${BROADCAST_PORT}/_broadcast`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body,
    signal: AbortSignal.timeout(WAIT_MS)
  })
  transcript.push(`HTTP POST /_broadcast ${body} -> ${res.status}`)
  await res.arrayBuffer()
  return res.status
}
