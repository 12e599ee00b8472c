/** Small configurations for tests, built from a minimal valid one. */

export const MINIMAL = `
[[backend]]
name = "vllm-gpu0"
kind = "vllm"
url = "http://127.0.0.1:8000"
gpus = [0]
  [backend.process]
  command = ["/usr/bin/vllm", "serve", "m", "--port", "8000"]
  restart_sec = "10s"
  start_limit_interval = "15m"
  start_limit_burst = 5

[[backend]]
name = "llamacpp-cpu"
kind = "llamacpp"
url = "http://127.0.0.1:8081"
  [backend.process]
  command = ["/usr/bin/llama-server", "--port", "8081"]

[[route]]
model = "llama"
tiers = [
  { backend = "vllm-gpu0", model = "meta-llama/Llama-3.1-8B" },
  { backend = "llamacpp-cpu", model = "llama-q4", max_tokens = 200 },
]
`;

/** Replaces `from` (which must occur) with `to` in the minimal config. */
export function minimalWith(from: string, to: string): string {
  if (!MINIMAL.includes(from)) throw new Error(`fixture does not contain ${JSON.stringify(from)}`);
  return MINIMAL.replace(from, to);
}

/** Broken configurations, each with the key path its problem must name. */
export const BROKEN: readonly { readonly name: string; readonly text: string; readonly path: string; readonly rule: string; readonly says: RegExp }[] = [
  {
    name: "syntax error",
    text: minimalWith('kind = "vllm"', 'kind = "vllm'),
    path: "",
    rule: "syntax",
    says: /line 4, column \d+/,
  },
  {
    name: "unknown key",
    text: minimalWith("restart_sec = ", "restart_secs = "),
    path: "backend[0].process.restart_secs",
    rule: "unknown_key",
    says: /did you mean "restart_sec"/,
  },
  {
    name: "missing backend reference",
    text: minimalWith('{ backend = "llamacpp-cpu"', '{ backend = "llamacpp-gpu"'),
    path: "route[0].tiers[1].backend",
    rule: "reference",
    says: /"llamacpp-gpu", which is not defined \(defined: vllm-gpu0, llamacpp-cpu\)/,
  },
  {
    name: "inline password",
    text: `${MINIMAL}\n[alerts.smtp]\nhost = "smtp.example.com"\nuser = "u"\npassword = "hunter2"\n`,
    path: "alerts.smtp.password",
    rule: "inline_secret",
    says: /alerts\.smtp\.password_file = .*password_env/,
  },
  {
    name: "impossible start limit",
    text: minimalWith('start_limit_interval = "15m"', 'start_limit_interval = "30s"'),
    path: "backend[0].process.start_limit_interval",
    rule: "start_limit",
    says: /can never trip/,
  },
  {
    name: "zero restart delay (a crash loop with no pause)",
    text: minimalWith('restart_sec = "10s"', 'restart_sec = "0s"'),
    path: "backend[0].process.restart_sec",
    rule: "positive",
    says: /expected a duration longer than zero.*found "0s"/,
  },
  {
    name: "bad duration",
    text: minimalWith('restart_sec = "10s"', 'restart_sec = "10"'),
    path: "backend[0].process.restart_sec",
    rule: "duration",
    says: /expected a duration with a unit.*found "10"/,
  },
];
