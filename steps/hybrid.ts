// Hybrid mode's steps: the cluster certificate, and waiting until nodes are ready.
import { mkdtempSync, readFileSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";
import { exec } from "./lib/exec";
import { StepError, progress } from "./lib/log";
import { untilAnswers } from "./lib/http";
import { StepSpec } from "./lib/spec";

type ClusterCert = Extract<StepSpec, { step: "cluster-cert" }>;
type Ready = Extract<StepSpec, { step: "ready" }>;

/**
 * A self-signed certificate and key shared by control and data planes (Kong's "shared" mode, as
 * `kong hybrid gen_cert` makes: EC P-384, CN kong_clustering). Printed once; the Command keeps it
 * in state as a secret.
 */
export async function clusterCert(spec: ClusterCert): Promise<{ cert: string; key: string }> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "kong-cluster-cert-")); // 0700: the key never sits readable by others
    try {
        const [certFile, keyFile] = [path.join(dir, "cluster.crt"), path.join(dir, "cluster.key")];
        const r = await exec(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes",
            "-keyout", keyFile, "-out", certFile, "-days", String(spec.days), "-subj", "/CN=kong_clustering"]).catch((e: Error) => {
            throw new StepError(`cannot run openssl (${e.message}); install it, or set kong.clusterCert and kong.clusterCertKey`);
        });
        if (r.code !== 0) throw new StepError(`openssl failed: ${r.stderr.trim()}`);
        progress(`cluster certificate generated (CN kong_clustering, ${spec.days} days)`);
        return { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

/** Waits until every node's /status/ready (or `spec.path`) answers 200: a data plane then holds configuration. */
export async function ready(spec: Ready): Promise<object> {
    const deadline = Date.now() + spec.timeoutSeconds * 1000;
    const path = spec.path ?? "/status/ready";
    for (const node of spec.cluster.nodes) {
        await untilAnswers(`${node.statusUrl}${path}`, deadline, (a) => a.status === 200 ? undefined : `${a.status} ${JSON.stringify(a.body)}`,
            (last) => `${node.container}: ${path} does not answer 200 after ${spec.timeoutSeconds}s (${last}); see docker logs ${node.container}`);
        progress(`${node.container}: ${path} answers`);
    }
    return { ready: spec.cluster.nodes.map((n) => n.container) };
}
