import { spawn } from "child_process";

export interface ExecResult {
    code: number;
    stdout: string;
    stderr: string;
}

/**
 * Runs argv without a shell. `env` is added to this process's environment; secrets reach the
 * child only through it, never through argv. `timeoutSeconds` kills a hung child. `onStdout` sees
 * stdout as it arrives (to time what the child prints).
 */
export function exec(argv: string[], env: Record<string, string> = {}, timeoutSeconds = 0, onStdout?: (chunk: string) => void): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        let timedOut = false;
        child.stdout.on("data", (d: Buffer) => {
            stdout += d.toString();
            onStdout?.(d.toString());
        });
        child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
        const timer = timeoutSeconds > 0 ? setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, timeoutSeconds * 1000) : undefined;
        child.on("error", (e) => { if (timer) clearTimeout(timer); reject(e); });
        child.on("close", (code, signal) => {
            if (timer) clearTimeout(timer);
            if (timedOut) stderr += `\n(killed after ${timeoutSeconds}s)`;
            resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
        });
    });
}
