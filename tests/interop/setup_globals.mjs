// Browser globals that @rails/actioncable expects, installed before it is imported (it captures
// `WebSocket` when its module is evaluated). Node has neither a global WebSocket (before 22) nor a
// global EventTarget (the connection monitor listens for "visibilitychange" on the window).
import { LoggingWebSocket } from './helpers.mjs'

globalThis.WebSocket = LoggingWebSocket
if (typeof globalThis.addEventListener !== 'function') globalThis.addEventListener = () => {}
if (typeof globalThis.removeEventListener !== 'function') globalThis.removeEventListener = () => {}
