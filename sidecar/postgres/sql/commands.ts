/**
 * Command names and coarse classes for PostgreSQL statements, from the node
 * type of the raw parse tree (the names follow PostgreSQL's command tags,
 * refined where the policy needs more: SET ROLE, SET SESSION AUTHORIZATION,
 * DROP TABLE vs DROP FUNCTION ...). The full list is in docs/postgres-classification.md.
 */

export type StatementClass =
  | 'read'
  | 'write'
  | 'ddl'
  | 'dcl'
  | 'tcl'
  | 'session'
  | 'admin'
  | 'utility'
  | 'unparseable';

export interface CommandInfo {
  command: string;
  class: StatementClass;
}

type Body = Record<string, unknown>;

const c = (command: string, cls: StatementClass): CommandInfo => ({ command, class: cls });

/** Fixed names by node type. */
const FIXED: Record<string, CommandInfo> = {
  InsertStmt: c('INSERT', 'write'),
  UpdateStmt: c('UPDATE', 'write'),
  DeleteStmt: c('DELETE', 'write'),
  MergeStmt: c('MERGE', 'write'),
  TruncateStmt: c('TRUNCATE', 'write'),
  CallStmt: c('CALL', 'write'),
  CreateStmt: c('CREATE TABLE', 'ddl'),
  CreateForeignTableStmt: c('CREATE FOREIGN TABLE', 'ddl'),
  IndexStmt: c('CREATE INDEX', 'ddl'),
  ViewStmt: c('CREATE VIEW', 'ddl'),
  CreateSchemaStmt: c('CREATE SCHEMA', 'ddl'),
  CreateSeqStmt: c('CREATE SEQUENCE', 'ddl'),
  AlterSeqStmt: c('ALTER SEQUENCE', 'ddl'),
  CreateTrigStmt: c('CREATE TRIGGER', 'ddl'),
  RuleStmt: c('CREATE RULE', 'ddl'),
  CreateDomainStmt: c('CREATE DOMAIN', 'ddl'),
  CompositeTypeStmt: c('CREATE TYPE', 'ddl'),
  CreateEnumStmt: c('CREATE TYPE', 'ddl'),
  CreateRangeStmt: c('CREATE TYPE', 'ddl'),
  AlterEnumStmt: c('ALTER TYPE', 'ddl'),
  AlterFunctionStmt: c('ALTER FUNCTION', 'ddl'),
  CommentStmt: c('COMMENT', 'ddl'),
  RefreshMatViewStmt: c('REFRESH MATERIALIZED VIEW', 'ddl'),
  CreateStatsStmt: c('CREATE STATISTICS', 'ddl'),
  ImportForeignSchemaStmt: c('IMPORT FOREIGN SCHEMA', 'ddl'),
  GrantRoleStmt: c('GRANT', 'dcl'),
  AlterRoleStmt: c('ALTER ROLE', 'dcl'),
  AlterRoleSetStmt: c('ALTER ROLE', 'dcl'),
  DropRoleStmt: c('DROP ROLE', 'dcl'),
  ReassignOwnedStmt: c('REASSIGN OWNED', 'dcl'),
  DropOwnedStmt: c('DROP OWNED', 'dcl'),
  AlterDefaultPrivilegesStmt: c('ALTER DEFAULT PRIVILEGES', 'dcl'),
  CreatePolicyStmt: c('CREATE POLICY', 'dcl'),
  AlterPolicyStmt: c('ALTER POLICY', 'dcl'),
  SecLabelStmt: c('SECURITY LABEL', 'dcl'),
  AlterOwnerStmt: c('ALTER OWNER', 'dcl'),
  AlterSystemStmt: c('ALTER SYSTEM', 'admin'),
  DoStmt: c('DO', 'admin'),
  ClusterStmt: c('CLUSTER', 'admin'),
  ReindexStmt: c('REINDEX', 'admin'),
  CheckPointStmt: c('CHECKPOINT', 'admin'),
  LoadStmt: c('LOAD', 'admin'),
  CreatedbStmt: c('CREATE DATABASE', 'admin'),
  DropdbStmt: c('DROP DATABASE', 'admin'),
  AlterDatabaseStmt: c('ALTER DATABASE', 'admin'),
  AlterDatabaseSetStmt: c('ALTER DATABASE', 'admin'),
  AlterDatabaseRefreshCollStmt: c('ALTER DATABASE', 'admin'),
  CreateExtensionStmt: c('CREATE EXTENSION', 'admin'),
  AlterExtensionStmt: c('ALTER EXTENSION', 'admin'),
  AlterExtensionContentsStmt: c('ALTER EXTENSION', 'admin'),
  CreateEventTrigStmt: c('CREATE EVENT TRIGGER', 'admin'),
  AlterEventTrigStmt: c('ALTER EVENT TRIGGER', 'admin'),
  CreatePLangStmt: c('CREATE LANGUAGE', 'admin'),
  CreateFdwStmt: c('CREATE FOREIGN DATA WRAPPER', 'admin'),
  AlterFdwStmt: c('ALTER FOREIGN DATA WRAPPER', 'admin'),
  CreateForeignServerStmt: c('CREATE SERVER', 'admin'),
  AlterForeignServerStmt: c('ALTER SERVER', 'admin'),
  CreateUserMappingStmt: c('CREATE USER MAPPING', 'admin'),
  AlterUserMappingStmt: c('ALTER USER MAPPING', 'admin'),
  DropUserMappingStmt: c('DROP USER MAPPING', 'admin'),
  CreatePublicationStmt: c('CREATE PUBLICATION', 'admin'),
  AlterPublicationStmt: c('ALTER PUBLICATION', 'admin'),
  CreateSubscriptionStmt: c('CREATE SUBSCRIPTION', 'admin'),
  AlterSubscriptionStmt: c('ALTER SUBSCRIPTION', 'admin'),
  DropSubscriptionStmt: c('DROP SUBSCRIPTION', 'admin'),
  CreateTableSpaceStmt: c('CREATE TABLESPACE', 'admin'),
  DropTableSpaceStmt: c('DROP TABLESPACE', 'admin'),
  AlterTableSpaceOptionsStmt: c('ALTER TABLESPACE', 'admin'),
  AlterTableMoveAllStmt: c('ALTER TABLE', 'admin'),
  CreateAmStmt: c('CREATE ACCESS METHOD', 'admin'),
  VariableShowStmt: c('SHOW', 'session'),
  DiscardStmt: c('DISCARD', 'session'),
  DeallocateStmt: c('DEALLOCATE', 'session'),
  ListenStmt: c('LISTEN', 'session'),
  UnlistenStmt: c('UNLISTEN', 'session'),
  ClosePortalStmt: c('CLOSE', 'session'),
  NotifyStmt: c('NOTIFY', 'utility'),
  LockStmt: c('LOCK TABLE', 'utility'),
  ConstraintsSetStmt: c('SET CONSTRAINTS', 'tcl'),
};

/** `OBJECT_MATVIEW` -> `MATERIALIZED VIEW`, `OBJECT_FOREIGN_TABLE` -> `FOREIGN TABLE` ... */
const OBJECT_NAMES: Record<string, string> = {
  OBJECT_MATVIEW: 'MATERIALIZED VIEW',
  OBJECT_FDW: 'FOREIGN DATA WRAPPER',
  OBJECT_FOREIGN_SERVER: 'SERVER',
  OBJECT_TSCONFIGURATION: 'TEXT SEARCH CONFIGURATION',
  OBJECT_TSDICTIONARY: 'TEXT SEARCH DICTIONARY',
  OBJECT_TSPARSER: 'TEXT SEARCH PARSER',
  OBJECT_TSTEMPLATE: 'TEXT SEARCH TEMPLATE',
  OBJECT_OPCLASS: 'OPERATOR CLASS',
  OBJECT_OPFAMILY: 'OPERATOR FAMILY',
  OBJECT_STATISTIC_EXT: 'STATISTICS',
  OBJECT_TABCONSTRAINT: 'CONSTRAINT',
  OBJECT_DOMCONSTRAINT: 'CONSTRAINT',
  OBJECT_LARGEOBJECT: 'LARGE OBJECT',
};

export function objectName(objtype: unknown): string {
  if (typeof objtype !== 'string') return 'OBJECT';
  return OBJECT_NAMES[objtype] ?? objtype.replace(/^OBJECT_/, '').replace(/_/g, ' ');
}

/** Object kinds whose DROP/ALTER is administration of the cluster rather than schema change. */
const ADMIN_OBJECTS = new Set([
  'OBJECT_EXTENSION',
  'OBJECT_EVENT_TRIGGER',
  'OBJECT_LANGUAGE',
  'OBJECT_FDW',
  'OBJECT_FOREIGN_SERVER',
  'OBJECT_PUBLICATION',
  'OBJECT_SUBSCRIPTION',
  'OBJECT_ACCESS_METHOD',
  'OBJECT_DATABASE',
  'OBJECT_TABLESPACE',
]);
const DCL_OBJECTS = new Set(['OBJECT_POLICY', 'OBJECT_ROLE']);

function classForObject(objtype: unknown): StatementClass {
  if (typeof objtype !== 'string') return 'ddl';
  if (ADMIN_OBJECTS.has(objtype)) return 'admin';
  if (DCL_OBJECTS.has(objtype)) return 'dcl';
  return 'ddl';
}

const TRANSACTION: Record<string, string> = {
  TRANS_STMT_BEGIN: 'BEGIN',
  TRANS_STMT_START: 'START TRANSACTION',
  TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK',
  TRANS_STMT_SAVEPOINT: 'SAVEPOINT',
  TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK TO SAVEPOINT',
  TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED',
  TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
};

const ROLE_KIND: Record<string, string> = { ROLESTMT_ROLE: 'ROLE', ROLESTMT_USER: 'USER', ROLESTMT_GROUP: 'GROUP' };

/** `CreateCastStmt` -> `CREATE CAST`: the fallback for node types without an entry above. */
function fromNodeType(type: string): CommandInfo {
  const words = type
    .replace(/Stmt$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toUpperCase();
  return c(words, /^(CREATE|ALTER|DROP|DEFINE) /.test(words) ? 'ddl' : 'utility');
}

/**
 * Command name and base class of one statement node, before what the
 * statement touches is known (the caller raises `read` to `write` when a
 * data-modifying part is found, and resolves EXPLAIN / PREPARE / EXECUTE / COPY).
 */
export function commandOf(type: string, body: Body): CommandInfo {
  const fixed = FIXED[type];
  if (fixed) return fixed;
  switch (type) {
    case 'SelectStmt':
      return body.intoClause ? c('SELECT INTO', 'ddl') : c('SELECT', 'read');
    case 'TransactionStmt':
      return c(TRANSACTION[String(body.kind)] ?? 'TRANSACTION', 'tcl');
    case 'VariableSetStmt':
      return variableSet(body);
    case 'CreateFunctionStmt':
      return body.is_procedure ? c('CREATE PROCEDURE', 'ddl') : c('CREATE FUNCTION', 'ddl');
    case 'CreateTableAsStmt':
      if (body.is_select_into) return c('SELECT INTO', 'ddl');
      return body.objtype === 'OBJECT_MATVIEW' ? c('CREATE MATERIALIZED VIEW', 'ddl') : c('CREATE TABLE AS', 'ddl');
    case 'CreateRoleStmt':
      return c(`CREATE ${ROLE_KIND[String(body.stmt_type)] ?? 'ROLE'}`, 'dcl');
    case 'GrantStmt':
      return c(body.is_grant ? 'GRANT' : 'REVOKE', 'dcl');
    case 'DropStmt':
      return c(`DROP ${objectName(body.removeType)}`, classForObject(body.removeType));
    case 'AlterTableStmt':
      return c(`ALTER ${objectName(body.objtype)}`, 'ddl');
    case 'RenameStmt':
      return c(`ALTER ${objectName(body.renameType)}`, classForObject(body.renameType));
    case 'AlterObjectSchemaStmt':
      return c(`ALTER ${objectName(body.objectType)}`, classForObject(body.objectType));
    case 'DefineStmt':
      return c(`CREATE ${objectName(body.kind)}`, 'ddl');
    case 'VacuumStmt':
      return body.is_vacuumcmd ? c('VACUUM', 'admin') : c('ANALYZE', 'admin');
    case 'DeclareCursorStmt':
      return c('DECLARE CURSOR', 'read');
    case 'FetchStmt':
      return body.ismove ? c('MOVE', 'read') : c('FETCH', 'read');
    case 'CopyStmt':
      return c('COPY', body.is_program || body.filename ? 'admin' : body.is_from ? 'write' : 'read');
    case 'ExplainStmt':
      return c('EXPLAIN', 'read');
    case 'PrepareStmt':
      return c('PREPARE', 'session');
    case 'ExecuteStmt':
      return c('EXECUTE', 'session');
    default:
      return fromNodeType(type);
  }
}

function variableSet(body: Body): CommandInfo {
  const kind = String(body.kind);
  const name = typeof body.name === 'string' ? body.name.toLowerCase() : '';
  if (kind === 'VAR_RESET' || kind === 'VAR_RESET_ALL') return c('RESET', 'session');
  if (name === 'role') return c('SET ROLE', 'session');
  if (name === 'session_authorization') return c('SET SESSION AUTHORIZATION', 'session');
  if (name === 'transaction' || name === 'session characteristics' || name === 'transaction snapshot') {
    return c('SET TRANSACTION', 'tcl');
  }
  return c('SET', 'session');
}
