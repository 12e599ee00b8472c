/** Secrets of the alert channels, read from the files their configuration names. The value reaches the transport and nothing else. */
import { readFile } from "node:fs/promises";
import { LlmsupError } from "../errors/error.ts";

/**
 * Reads a secret file (one trailing newline dropped); `what` names it in the error,
 * e.g. "the SMTP password from alerts.smtp.password_file". Throws LLMSUP_E_SECRET_UNREADABLE
 * when the file cannot be read or is empty.
 */
export async function readSecretFile(file: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : (code ?? "unreadable");
    throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `cannot read ${what} ${file}: ${why}`, { path: file, errno: code });
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `${what} ${file} is empty`, { path: file });
  return value;
}
