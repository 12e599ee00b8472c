/**
 * Starting the simulated vLLM's engine child (engine.ts) as vLLM starts its
 * EngineCore: a child of the API server with an IPC channel, writing to the
 * API server's own stdout and stderr, left alone when the API server exits.
 * Thin shell over execa.
 */
import { execa, type Message } from "execa";

export interface EngineChild {
  /** Whether it has exited. */
  readonly ended: boolean;
  /** Resolves once it has exited. */
  readonly exited: Promise<void>;
  /** The first message it sends; undefined when it exits (or closes the channel) without one. */
  firstMessage(): Promise<unknown>;
  /** Sends it a message; one it can no longer receive is dropped. */
  send(message: Message<"json">): void;
  kill(signal: NodeJS.Signals): void;
}

export function startEngineChild(file: string, args: readonly string[]): EngineChild {
  const subprocess = execa(file, [...args], {
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    ipc: true,
    serialization: "json",
    buffer: false,
    reject: false,
    // Like vLLM's engine, it may outlive the API server; and a SIGTERM stays a SIGTERM.
    cleanup: false,
    forceKillAfterDelay: false,
  });
  let ended = false;
  const exited = subprocess.then(() => {
    ended = true;
  });
  return {
    get ended() {
      return ended;
    },
    exited,
    async firstMessage() {
      try {
        return await subprocess.getOneMessage();
      } catch {
        return undefined;
      }
    },
    send(message) {
      try {
        subprocess.sendMessage(message).catch(() => undefined);
      } catch {
        /* the channel is closed: it has gone */
      }
    },
    kill: (signal) => void subprocess.kill(signal),
  };
}
