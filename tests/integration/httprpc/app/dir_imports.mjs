// @anycable/serverless-js 0.1.0 ships ES modules with directory imports ("./rpc"), which bundlers
// (Next.js, Vercel) resolve and plain Node refuses. This resolve hook, registered with
// `node --import ./dir_imports.mjs`, retries such an import as "<dir>/index.js"; nothing else
// changes.
import { register } from "node:module";

if (!process.env.RINGCABLE_DIR_IMPORTS_HOOK) {
  process.env.RINGCABLE_DIR_IMPORTS_HOOK = "1";
  register(import.meta.url);
}

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    if (e?.code !== "ERR_UNSUPPORTED_DIR_IMPORT") throw e;
    return next(`${specifier}/index.js`, context);
  }
}
