/**
 * Types for the parts of `mvdan-sh` (the GopherJS build of mvdan.cc/sh/v3)
 * that the command parser uses. Nodes are Go structs seen through GopherJS:
 * fields are properties, positions are objects with an Offset() method
 * (byte offsets into the UTF-8 source).
 */
declare module 'mvdan-sh' {
  export interface ShPos {
    Offset(): number;
  }
  export interface ShNode {
    Pos(): ShPos;
    End(): ShPos;
    [field: string]: any;
  }
  export interface ShParser {
    Parse(src: string, name: string): ShNode;
  }
  export interface ShSyntax {
    NewParser(...opts: unknown[]): ShParser;
    NodeType(n: ShNode): string;
    Walk(n: ShNode, f: (n: ShNode | null) => boolean): void;
    LangBash: unknown;
    Variant(v: unknown): unknown;
  }
  const sh: { syntax: ShSyntax };
  export default sh;
}
