// Typo hints: an unknown key is reported with the known key it is one edit away from.

/** One edit (insert, delete, substitute or swap) apart: catches `nodez`, `verison`. */
export function closeEnough(a: string, b: string): boolean {
    if (a === b) return false;
    if (Math.abs(a.length - b.length) > 1) return false;
    const la = a.toLowerCase();
    const lb = b.toLowerCase();
    if (la === lb) return true;
    let i = 0;
    while (i < la.length && la[i] === lb[i]) i++;
    const tail = (x: string, n: number) => x.slice(i + n);
    return tail(la, 1) === tail(lb, 1) || tail(la, 1) === tail(lb, 0) || tail(la, 0) === tail(lb, 1) ||
        (la[i] === lb[i + 1] && la[i + 1] === lb[i] && tail(la, 2) === tail(lb, 2));
}
