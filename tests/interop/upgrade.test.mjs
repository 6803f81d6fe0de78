// Live upgrade (#19) with the official AnyCable JS client: @anycable/core clients (v1 and the
// extended protocol) stay connected while their server is upgraded with SIGUSR2, keep receiving
// broadcasts and performing actions, and never see a disconnect; an EventSource (SSE) client keeps
// its stream (one request, no reconnect, no disconnect event). The test starts its own ringcable
// (the shared one must keep its PID) and stops the upgraded process by the PID in its log.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { spawn } from 'node:child_process'
import { createCable } from '@anycable/core'
import { EventSource } from 'eventsource'
import { deferred, Inbox, LoggingWebSocket, withTranscript, WAIT_MS } from './helpers.mjs'

const BIN = process.env.RINGCABLE_INTEROP_BIN
const RPC_PORT = process.env.RINGCABLE_INTEROP_RPC_PORT

function freePort() {
  return new Promise(resolve => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

// Polls `check` every 20 ms until it returns true, at most `ms` (a bounded wait for a condition).
async function waitUntil(what, check, ms = WAIT_MS) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return
    await new Promise(r => setTimeout(r, 20))
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`)
}

const alive = pid => {
  try {
    process.kill(pid, 0)
    // An orphaned process may stay a zombie (no reaper in a container): that is not alive.
    return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].startsWith('Z')
  } catch {
    return false
  }
}

describe('live upgrade with @anycable/core clients', { timeout: 60000 }, () => {
  let dir, logPath, port, bport, oldProc, newPid
  const cables = []
  const log = () => fs.readFileSync(logPath, 'utf8')

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringcable-upgrade-'))
    logPath = path.join(dir, 'ringcable.log')
    port = await freePort()
    bport = await freePort()
    const out = fs.openSync(logPath, 'a')
    oldProc = spawn(BIN, ['--host', '127.0.0.1', '--port', String(port), '--http_broadcast_port',
      String(bport), '--rpc_host', `127.0.0.1:${RPC_PORT}`, '--workers', '2', '--sse'],
    { stdio: ['ignore', out, out] })
    await waitUntil('the server to answer /health', async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200
      } catch {
        return false
      }
    })
  })

  let sse
  after(async () => {
    if (sse) sse.close()
    for (const c of cables) c.disconnect()
    if (oldProc && oldProc.exitCode === null) oldProc.kill('SIGKILL')
    if (newPid && alive(newPid)) {
      process.kill(newPid, 'SIGTERM')
      await waitUntil('the upgraded server to stop', () => !alive(newPid)).catch(() => process.kill(newPid, 'SIGKILL'))
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const publish = async data => {
    const res = await fetch(`http://127.0.0.1:${bport}/_broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ stream: 'upg', data: JSON.stringify(data) }),
      signal: AbortSignal.timeout(WAIT_MS)
    })
    await res.arrayBuffer()
    assert.equal(res.status, 201)
  }

  it('keeps v1 and ext clients connected, subscribed and working across SIGUSR2', () =>
    withTranscript(async () => {
      const clients = []
      for (const protocol of ['actioncable-v1-json', 'actioncable-v1-ext-json']) {
        const cable = createCable(`ws://127.0.0.1:${port}/cable?user=bob`, {
          protocol,
          websocketImplementation: LoggingWebSocket,
          logLevel: 'error',
          maxReconnectAttempts: 0
        })
        cables.push(cable)
        const disconnects = []
        cable.on('disconnect', ev => disconnects.push(ev))
        await cable.connect()
        const channel = cable.subscribeTo('ChatChannel', { stream: 'upg' })
        const messages = new Inbox(`${protocol} messages`)
        channel.on('message', msg => messages.push(msg))
        await channel.ensureSubscribed()
        clients.push({ cable, channel, messages, disconnects, sid: cable.sessionId })
      }
      // An EventSource on the same stream: every request it makes is counted (a reconnect would
      // be a second one), every event but pings is queued.
      const sseRequests = []
      const sseEvents = new Inbox('SSE events')
      const identifier = JSON.stringify({ channel: 'ChatChannel', stream: 'upg' })
      sse = new EventSource(`http://127.0.0.1:${port}/events?user=sse&identifier=${encodeURIComponent(identifier)}`, {
        fetch: (url, init) => {
          sseRequests.push(String(url))
          return fetch(url, init)
        }
      })
      for (const type of ['message', 'welcome', 'confirm_subscription', 'disconnect']) {
        sse.addEventListener(type, ev => sseEvents.push({ type, data: ev.data }))
      }
      assert.equal((await sseEvents.next('SSE welcome')).type, 'welcome')
      assert.equal((await sseEvents.next('SSE confirmation')).type, 'confirm_subscription')

      await publish({ n: 1 })
      for (const c of clients) assert.deepEqual(await c.messages.next('n=1'), { n: 1 })
      assert.deepEqual(await sseEvents.next('SSE n=1'), { type: 'message', data: JSON.stringify({ n: 1 }) })

      process.kill(oldProc.pid, 'SIGUSR2')
      const exited = deferred('the old process to exit', 30000)
      oldProc.once('exit', code => exited.resolve(code))
      assert.equal(await exited.promise, 0)
      const started = /upgrade: started .*\(pid (\d+)\)/.exec(log())
      assert.ok(started, 'the log names the new process')
      newPid = Number(started[1])
      assert.ok(alive(newPid))
      // Two WebSocket sessions, plus fetch()'s idle keep-alive connections (they move too).
      await waitUntil('the adoption', () => /upgrade: adopted \d+ connections/.test(log()))
      assert.match(log(), /upgrade: complete in \d+ ms: \d+ connections handed over, 0 fell back/)

      await publish({ n: 2 })
      for (const c of clients) {
        assert.deepEqual(await c.messages.next('n=2 after the upgrade'), { n: 2 })
        await c.channel.perform('echo', { text: 'still here' })
        assert.deepEqual(await c.messages.next('the echo reply'), { text: 'still here', action: 'echo' })
        assert.equal(c.cable.state, 'connected')
        assert.equal(c.cable.sessionId, c.sid)
        assert.deepEqual(c.disconnects, [])
      }
      // The SSE stream goes on: the next event is the broadcast, on the one request it ever made.
      assert.deepEqual(await sseEvents.next('SSE n=2 after the upgrade'), { type: 'message', data: JSON.stringify({ n: 2 }) })
      assert.equal(sseRequests.length, 1)
      assert.equal(sse.readyState, EventSource.OPEN)
    }))
})
