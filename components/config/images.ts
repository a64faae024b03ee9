// Docker image references, by the grammar Docker itself parses (distribution's `reference`
// package): [registry[:port]/]path[:tag][@digest]. The program passes them to `docker run` and to
// the provider, where a leading "-" would be read as an option and a stray tag doubles up.

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?`;
const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const REPOSITORY = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;

export interface ImageReference {
    repository: string;
    tag?: string;
    digest?: string;
}

/** The parts of an image reference; undefined when Docker would not accept it. */
export function parseImageReference(ref: string): ImageReference | undefined {
    const at = ref.indexOf("@");
    const named = at < 0 ? ref : ref.slice(0, at);
    const digest = at < 0 ? undefined : ref.slice(at + 1);
    // A tag follows the last ":" after the last "/" (a ":" before it is a registry's port).
    const colon = named.lastIndexOf(":");
    const hasTag = colon > named.lastIndexOf("/");
    const repository = hasTag ? named.slice(0, colon) : named;
    const tag = hasTag ? named.slice(colon + 1) : undefined;
    if (repository.length > 255 || !REPOSITORY.test(repository)) return undefined;
    if (tag !== undefined && !TAG.test(tag)) return undefined;
    if (digest !== undefined && !DIGEST.test(digest)) return undefined;
    return { repository, tag, digest };
}

/**
 * `kong.image`: a repository only, since each version's image is `<kong.image>:<version>`.
 * Undefined when it is one.
 */
export function kongImageProblem(key: string, image: string): string | undefined {
    if (image.startsWith("-")) {
        return `${key} "${image}" starts with "-", which docker reads as an option: set ${key} to a repository such as "kong" or "kong/kong-gateway"`;
    }
    const ref = parseImageReference(image);
    if (!ref) {
        return `${key} "${image}" is not an image repository (lower-case letters and digits separated by ".", "_" or "-", ` +
            `"/" between path parts, optionally a registry host first): set it to e.g. "kong", "kong/kong-gateway" or "registry.example.com:5000/kong"`;
    }
    if (ref.tag !== undefined && ref.digest === undefined) {
        return `${key} "${image}" includes the tag "${ref.tag}", and the tag is the version: set ${key} to "${ref.repository}" and put the tag in kong.version ("${ref.tag}")`;
    }
    if (ref.digest !== undefined) {
        return `${key} "${image}" pins a digest, and each version's image is ${key}:<version>: set ${key} to "${ref.repository}"`;
    }
    return undefined;
}

/** An image given whole (`database.image`, `upgrade.dumpImage`): repository, optional tag and digest. */
export function imageReferenceProblem(key: string, image: string, example: string): string | undefined {
    if (image.startsWith("-")) {
        return `${key} "${image}" starts with "-", which docker reads as an option: set ${key} to an image such as "${example}"`;
    }
    if (parseImageReference(image)) return undefined;
    return `${key} "${image}" is not a Docker image reference: write repository[:tag][@digest] in lower case, e.g. "${example}"`;
}
